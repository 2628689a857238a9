"""Bills and reconciliation runs. A bill and a run hold every owner's figures, so only users
who see every owner read them; finance and admins upload bills and reconcile."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from spendtrail.access.principal import Principal
from spendtrail.access.roles import Permission
from spendtrail.console.errors import NotFound
from spendtrail.console.types import (
    BillItem,
    BillUploaded,
    DifferenceItem,
    ReconcileRequest,
    ReconciliationDetail,
    ReconciliationRun,
    amount,
)
from spendtrail.console.uploads import Upload, keep
from spendtrail.periods import parse_period
from spendtrail.reconcile import (
    BillImport,
    Reconciliation,
    import_bill,
    list_imports,
    list_reconciliations,
    load_reconciliation,
    parse_tolerance,
    reconcile,
)


def runs(engine: sa.Engine, who: Principal, period: str | None = None) -> list[ReconciliationRun]:
    who.require_everyone()
    chosen = None if period is None else parse_period(period)
    with engine.connect() as conn:
        return [_run(r) for r in list_reconciliations(conn, chosen)]


def run_detail(
    engine: sa.Engine,
    who: Principal,
    run_id: int,
    *,
    kind: str | None = None,
    owner: str | None = None,
    limit: int = 500,
) -> ReconciliationDetail:
    who.require_everyone()
    with engine.connect() as conn:
        record = load_reconciliation(conn, run_id)
    if record is None:
        raise NotFound(f"no reconciliation {run_id}")
    chosen = [
        d
        for d in record.differences
        if (kind is None or d.kind == kind) and (owner is None or d.owner == owner)
    ]
    items = [
        DifferenceItem(
            kind=d.kind,
            day=d.day,
            provider_request_id=d.provider_request_id,
            event_id=d.event_id,
            bill_line=d.bill_line,
            model=d.model,
            owner=d.owner,
            logged=None if d.logged_pico is None else amount(d.logged_pico, record.currency),
            billed=None if d.billed_pico is None else amount(d.billed_pico, record.currency),
            detail=d.detail,
        )
        for d in chosen[:limit]
    ]
    return ReconciliationDetail(run=_run(record), differences=items, total_differences=len(chosen))


def bills(engine: sa.Engine, who: Principal) -> list[BillItem]:
    who.require_everyone()
    with engine.connect() as conn:
        return [_bill(b) for b in list_imports(conn)]


def upload_bill(
    engine: sa.Engine,
    who: Principal,
    home: Path,
    upload: Upload,
    bill_format: str | None,
    provider: str | None = None,
) -> BillUploaded:
    """Keep an uploaded bill file and import it (format detected unless given)."""
    who.require_everyone(Permission.reconcile)
    result = import_bill(
        engine, keep(home, upload), bill_format, actor=who.actor, provider=provider
    )
    return BillUploaded(bill=_bill(result.bill), first_errors=[str(e) for e in result.errors])


def run_reconciliation(
    engine: sa.Engine, who: Principal, request: ReconcileRequest
) -> ReconciliationRun:
    who.require_everyone(Permission.reconcile)
    record = reconcile(
        engine,
        period=parse_period(request.period),
        bill_id=request.bill_id,
        reviewer=request.reviewer,
        actor=who.actor,
        tolerance=parse_tolerance(request.tolerance),
        provider=request.provider,
    )
    return _run(record)


def _run(r: Reconciliation) -> ReconciliationRun:
    return ReconciliationRun(
        id=r.id,
        period=r.period.label,
        provider=r.provider,
        bill_id=r.bill_import_id,
        bill_file=Path(r.bill_file).name,
        method=r.method,
        reviewer=r.reviewer,
        created_at=r.created_at,
        created_by=r.created_by,
        result=r.result,
        reasons=r.reasons,
        tolerance_percent=f"{r.tolerance * 100:f}",
        logged=amount(r.logged_pico, r.currency),
        billed=amount(r.billed_pico, r.currency),
        variance=amount(r.variance_pico, r.currency),
        counts=r.counts,
    )


def _bill(b: BillImport) -> BillItem:
    return BillItem(
        id=b.id,
        format=b.format,
        file_name=Path(b.file_name).name,
        provider=b.provider,
        imported_at=b.imported_at,
        imported_by=b.imported_by,
        lines=b.line_count,
        errors=b.error_count,
        first_day=b.first_day,
        last_day=b.last_day,
        voided=b.voided_at is not None,
    )
