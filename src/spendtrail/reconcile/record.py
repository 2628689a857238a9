"""The reconciliation record: one run of the matcher, judged against a tolerance, written once
with its reviewer and its differences. Records are never updated; a new run is a new record.

Variance is logged minus billed, in the bill's currency; variance % is relative to billed.
Result: **inconclusive** when the comparison cannot be trusted (no bill lines in the period,
a usage-only bill with no amounts, nothing matched, ledger events on days the bill does not
cover, unpriced events, amounts in another currency, rows the import rejected), else **pass**
when |variance| <= tolerance x |billed|, else **fail**.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from itertools import islice

import sqlalchemy as sa

from spendtrail.bills import BillRowError
from spendtrail.errors import SpendtrailError
from spendtrail.ledger.audit import record_change
from spendtrail.ledger.db import as_utc
from spendtrail.ledger.schema import reconciliation_differences, reconciliations
from spendtrail.money import format_amount, from_pico
from spendtrail.periods import Period
from spendtrail.reconcile.match import (
    DIFFERENCE_KINDS,
    UNATTRIBUTED,
    Difference,
    Matching,
    OwnerTotals,
    match_bill,
)
from spendtrail.reconcile.store import get_import, import_errors

RESULTS = ("pass", "fail", "inconclusive")
_PERCENT = Decimal("0.0001")
_DIFFERENCE_FIELDS = tuple(f.name for f in fields(Difference))


class ReconcileError(SpendtrailError):
    """A reconciliation that cannot be run (unknown or voided bill, bad tolerance, no
    reviewer)."""


@dataclass(frozen=True)
class Reconciliation:
    id: int
    created_at: datetime
    created_by: str
    reviewer: str
    period: Period
    bill_import_id: int
    bill_file: str
    provider: str
    method: str
    currency: str
    tolerance: Decimal  # a fraction: 0.01 is 1%
    logged_pico: int
    billed_pico: int
    consumed_pico: int
    refunded_pico: int
    error_pico: int
    variance_pico: int
    within_tolerance: bool
    result: str
    reasons: list[str]
    counts: dict[str, int]  # events, unpriced_events, bill_lines, matched, per difference kind
    owners: list[OwnerTotals]
    differences: list[Difference] = field(default_factory=list)

    @property
    def variance_percent(self) -> Decimal | None:
        return variance_percent(self.variance_pico, self.billed_pico)

    def money(self, pico: int | None) -> str:
        return "" if pico is None else f"{format_amount(from_pico(pico))} {self.currency}"


def parse_tolerance(text: str) -> Decimal:
    """'1%', '0.5%' or '2' (percent) -> the fraction 0.01, 0.005, 0.02."""
    try:
        percent = Decimal(text.strip().removesuffix("%").strip())
    except InvalidOperation:
        percent = Decimal(-1)
    if not percent.is_finite() or percent < 0:
        raise ReconcileError(f"tolerance {text!r}: expected a non-negative percent, e.g. 1%")
    return percent / 100


def variance_percent(variance_pico: int, billed_pico: int) -> Decimal | None:
    if billed_pico == 0:
        return Decimal(0) if variance_pico == 0 else None
    percent = (Decimal(variance_pico) * 100 / abs(Decimal(billed_pico))).quantize(
        _PERCENT, ROUND_HALF_EVEN)
    return abs(percent) if percent == 0 else percent  # a tiny negative is 0.0000, not -0.0000


def reconcile(
    engine: sa.Engine,
    *,
    period: Period,
    bill_id: int,
    reviewer: str,
    actor: str,
    tolerance: Decimal = Decimal("0.01"),
    provider: str | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> Reconciliation:
    """Match bill `bill_id` against the ledger's events of `provider` (default: the bill's
    provider) in `period`, and write the record."""
    if not reviewer.strip():
        raise ReconcileError("reviewer: name the person who reviews this reconciliation")
    with engine.begin() as conn:
        bill = get_import(conn, bill_id)
        if bill is None:
            raise ReconcileError(f"no bill {bill_id}; see `spendtrail bills list`")
        if bill.voided_at is not None:
            raise ReconcileError(f"bill {bill_id} is {bill.describe_void()}; it cannot be "
                                 "reconciled (import the right file and use its bill)")
        provider = provider or bill.provider
        if provider is None:
            raise ReconcileError(
                f"bill {bill_id} names several providers; say which with --provider")
        found = match_bill(conn, bill.id, provider, period, tolerance=tolerance,
                           on_progress=on_progress)
        # Rows the import could not read may belong to any period: each is listed, and the
        # comparison is inconclusive, since the billed total may be missing them.
        errors = list(import_errors(conn, bill))
        found.differences.extend(
            Difference("rejected_row", f"not imported: {error}", bill_line=error.line)
            for error in errors)
        variance = found.logged_pico - found.billed_pico
        within = abs(variance) <= tolerance * abs(found.billed_pico)
        reasons = _inconclusive(found, period, errors, bill.id)
        if reasons:
            result = "inconclusive"
        elif within:
            result = "pass"
        else:
            percent = variance_percent(variance, found.billed_pico)
            reasons = [f"variance {format_amount(from_pico(variance))} {found.currency} "
                       f"({percent}%) exceeds the tolerance of {tolerance * 100:f}%"]
            result = "fail"
        kinds = Counter(d.kind for d in found.differences)
        summary = {
            "bill_file": bill.file_name,
            "consumed_pico": found.consumed_pico,
            "refunded_pico": found.refunded_pico,
            "error_pico": found.error_pico,
            "counts": {
                "events": found.events, "unpriced_events": found.unpriced_events,
                "bill_lines": found.bill_lines, "matched": found.matched,
                **{kind: kinds[kind] for kind in DIFFERENCE_KINDS},
            },
            "owners": [asdict(o) for o in _owner_order(found.owners)],
        }
        record_id = conn.execute(reconciliations.insert().values(
            created_at=datetime.now(UTC), created_by=actor, reviewer=reviewer.strip(),
            period_label=period.label, period_start=period.start, period_end=period.end,
            bill_import_id=bill.id, provider=provider, method=found.method,
            currency=found.currency, tolerance=str(tolerance), logged_pico=found.logged_pico,
            billed_pico=found.billed_pico, variance_pico=variance, within_tolerance=within,
            result=result, reasons=json.dumps(reasons), summary=json.dumps(summary),
        )).inserted_primary_key[0]
        rows = iter(found.differences)
        while batch := list(islice(rows, 10_000)):
            conn.execute(reconciliation_differences.insert(),
                         [{"reconciliation_id": record_id, **asdict(d)} for d in batch])
        record_change(conn, actor=actor, action="reconcile.record", object_type="reconciliation",
                      object_id=str(record_id),
                      after={"period": period.label, "bill": bill.id, "provider": provider,
                             "result": result, "reviewer": reviewer.strip(),
                             "variance_pico": variance})
        record = load_reconciliation(conn, record_id)
    assert record is not None
    return record


def load_reconciliation(conn: sa.Connection, record_id: int) -> Reconciliation | None:
    r = reconciliations.c
    row = conn.execute(sa.select(reconciliations).where(r.id == record_id)).first()
    if row is None:
        return None
    d = reconciliation_differences.c
    query = (sa.select(*(d[name] for name in _DIFFERENCE_FIELDS))
             .where(d.reconciliation_id == record_id).order_by(d.id))
    return _record(row, [Difference(**m) for m in conn.execute(query).mappings()])


def list_reconciliations(conn: sa.Connection, period: Period | None = None
                         ) -> list[Reconciliation]:
    """Every run, newest first, without its differences (``load_reconciliation`` has them)."""
    r = reconciliations.c
    query = sa.select(reconciliations).order_by(r.id.desc())
    if period is not None:
        query = query.where(r.period_start < period.end, r.period_end > period.start)
    return [_record(row, []) for row in conn.execute(query)]


def _record(row: sa.Row, differences: list[Difference]) -> Reconciliation:
    summary = json.loads(row.summary)
    return Reconciliation(
        id=row.id, created_at=as_utc(row.created_at), created_by=row.created_by,
        reviewer=row.reviewer, period=Period(row.period_start, row.period_end, row.period_label),
        bill_import_id=row.bill_import_id, bill_file=summary["bill_file"],
        provider=row.provider, method=row.method, currency=row.currency,
        tolerance=Decimal(row.tolerance), logged_pico=row.logged_pico,
        billed_pico=row.billed_pico, consumed_pico=summary["consumed_pico"],
        refunded_pico=summary["refunded_pico"], error_pico=summary["error_pico"],
        variance_pico=row.variance_pico, within_tolerance=row.within_tolerance,
        result=row.result, reasons=json.loads(row.reasons), counts=summary["counts"],
        owners=[OwnerTotals(**o) for o in summary["owners"]], differences=differences,
    )


def _inconclusive(
    found: Matching, period: Period, rejected: list[BillRowError], bill_id: int
) -> list[str]:
    reasons = []
    if not found.bill_lines:
        reasons.append(f"the bill has no lines in {period.label}")
    elif not found.priced_lines:
        reasons.append("the bill carries no amounts (a usage-only report)")
    if found.bill_lines and found.events and not found.matched:
        reasons.append("nothing in the bill could be matched to the ledger")
    if found.ledger_days and found.bill_days and (
        found.ledger_days[0] < found.bill_days[0] or found.ledger_days[1] > found.bill_days[1]
    ):
        reasons.append(
            f"the bill covers {found.bill_days[0]}..{found.bill_days[1]} but the ledger has "
            f"events on {found.ledger_days[0]}..{found.ledger_days[1]}")
    if found.unpriced_events:
        reasons.append(f"{found.unpriced_events} events in the period are unpriced, so the "
                       "logged total is incomplete")
    if found.foreign_currency_events or found.foreign_currency_lines:
        reasons.append(f"amounts in a currency other than {found.currency}: "
                       f"{found.foreign_currency_events} events, "
                       f"{found.foreign_currency_lines} bill lines")
    if rejected:
        stopped = next((e.line for e in rejected if e.fatal), None)
        reasons.append(
            f"{len(rejected)} rows of the bill were rejected at import, so the billed total "
            f"may be incomplete (listed as rejected_row; spendtrail bills errors {bill_id})"
            + ("" if stopped is None else f"; reading stopped at line {stopped}"))
    return reasons


def _owner_order(owners: dict[str, OwnerTotals]) -> list[OwnerTotals]:
    return sorted(owners.values(), key=lambda o: (o.owner == UNATTRIBUTED, o.owner))
