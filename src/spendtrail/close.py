"""Closing a month (docs/reports.md, "Closing a month"): it composes the journal, the
ledger, allocation, reconciliation and the statements, so it sits above all of them.

``blockers`` lists what stands in the way of a close, each with a stable code (the table
``BLOCKERS``). ``close_period`` closes when there are none, or when each is accepted with a
reason: in one transaction it stores the month's allocation entries (``allocation.entries``),
marks the month closed (its entries are final from then on; what changes in it later becomes
adjustment entries of the first open month), snapshots its statements (company and every
owner, md, html, csv and json, bytes and sha256) and its FOCUS export (``export focus`` of
the month reads it back), and writes the audit record.
``reopen_period`` undoes a close, with a reason, audited; the snapshots it drops are named in
the audit record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from fractions import Fraction
from pathlib import Path

import sqlalchemy as sa

from spendtrail.allocation.coverage import DEFAULT_THRESHOLD, coverage
from spendtrail.allocation.entries import is_month, period_entries, run_allocation
from spendtrail.allocation.rule_store import latest_version
from spendtrail.errors import SpendtrailError
from spendtrail.journal.spool import backlog
from spendtrail.ledger.allocation_entries import (
    mark_closed,
    mark_reopened,
    period_record,
    save_snapshot,
)
from spendtrail.ledger.audit import record_change
from spendtrail.ledger.partitions import retired_month_set
from spendtrail.ledger.prices import load_catalog
from spendtrail.ledger.schema import prices_used_daily, reconciliations, rollups_daily
from spendtrail.periods import Period
from spendtrail.pricing.check import stale_prices
from spendtrail.reports.chargeback import build_statement
from spendtrail.reports.focus import SNAPSHOT_FORMAT, SNAPSHOT_SCOPE, snapshot_document
from spendtrail.reports.statement_file import (
    SNAPSHOT_FORMATS,
    render_statement,
    scopes_of,
)

BLOCKERS = {
    "spool_not_drained": "the capture spool still holds events the ledger has not ingested",
    "unpriced_usage": "events of the month have no price",
    "stale_prices": "price entries used in the month were not checked within the cadence",
    "no_reconciliation": "a provider's usage has no reconciliation against its bill",
    "reconciliation_failed": "the latest reconciliation did not pass",
    "reconciliation_stale": "the ledger changed since the reconciliation was run",
    "unallocated": "unallocated spend is above the threshold",
    "rules_not_stored": "shared-pool usage, but no shared-cost rules stored",
}


class CloseError(SpendtrailError):
    """A month that cannot be closed or reopened as asked; ``blockers`` lists what blocks."""

    def __init__(self, message: str, blockers: list[Blocker] | None = None) -> None:
        super().__init__(message)
        self.blockers = blockers or []


@dataclass(frozen=True, slots=True)
class Blocker:
    code: str
    message: str


@dataclass
class CloseResult:
    period: Period
    blockers: list[Blocker]
    accepted: dict[str, str]
    entries: int
    charges: dict[str, dict[str, int]]
    snapshots: list[tuple[str, str, str]] = field(default_factory=list)  # scope, fmt, sha256


def blockers(
    conn: sa.Connection,
    period: Period,
    *,
    spool_dir: Path | None = None,
    threshold: Fraction = DEFAULT_THRESHOLD,
) -> list[Blocker]:
    found: list[Blocker] = []
    if spool_dir is not None:
        files, size, _ = backlog(spool_dir)
        if files:
            found.append(
                Blocker(
                    "spool_not_drained",
                    f"{files} spool files ({size:,} bytes) in {spool_dir} are "
                    "not ingested yet (spendtrail ingest)",
                )
            )
    r = rollups_daily.c
    in_month = sa.and_(r.day >= period.start, r.day < period.end)
    unpriced = int(
        conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(r.unpriced_events), 0)).where(in_month)
        ).scalar_one()
    )
    if unpriced:
        found.append(
            Blocker(
                "unpriced_usage",
                f"{unpriced} events of {period.label} are unpriced (spendtrail prices unpriced)",
            )
        )
    found += _stale(conn, period)
    found += _reconciliation(conn, period)
    for alert in coverage(conn, period, threshold).alerts():
        found.append(Blocker("unallocated", alert))
    pooled = conn.execute(
        sa.select(sa.func.count()).where(in_month, r.allocation_status == "shared")
    ).scalar_one()
    if pooled and latest_version(conn) is None:
        found.append(
            Blocker(
                "rules_not_stored",
                "shared-pool usage in the month but no "
                "shared-cost rules stored (spendtrail allocation rules-load)",
            )
        )
    return found


def _stale(conn: sa.Connection, period: Period) -> list[Blocker]:
    """Price entries that priced the month, not checked within the review cadence of its
    last day."""
    u = prices_used_daily.c
    used = set(
        conn.execute(
            sa.select(u.price_entry_id).distinct().where(u.day >= period.start, u.day < period.end)
        ).scalars()
    )
    last = date.fromordinal(period.end.toordinal() - 1)
    catalog = load_catalog(conn)
    stale = [s for s in stale_prices(catalog, last) if s.entry.id in used]
    if not stale:
        return []
    shown = ", ".join(f"{s.entry.id} ({s.age_days} days)" for s in stale[:5])
    return [
        Blocker(
            "stale_prices",
            f"{len(stale)} price entries used in {period.label} were "
            f"last checked too long before its end: {shown}",
        )
    ]


def _reconciliation(conn: sa.Connection, period: Period) -> list[Blocker]:
    r, rec = rollups_daily.c, reconciliations.c
    spent = {
        (provider, currency): int(total)
        for provider, currency, total in conn.execute(
            sa.select(r.provider, r.currency, sa.func.sum(r.amount_pico))
            .where(r.day >= period.start, r.day < period.end, r.currency != "")
            .group_by(r.provider, r.currency)
        )
    }
    latest = (
        sa.select(sa.func.max(rec.id))
        .where(rec.period_start == period.start, rec.period_end == period.end)
        .group_by(rec.provider)
    )
    records = {
        row.provider: row
        for row in conn.execute(
            sa.select(rec.id, rec.provider, rec.currency, rec.result, rec.logged_pico).where(
                rec.id.in_(latest)
            )
        )
    }
    found = []
    for provider in sorted({p for p, _ in spent}):
        row = records.get(provider)
        if row is None:
            found.append(
                Blocker(
                    "no_reconciliation",
                    f"{provider}: no reconciliation of {period.label} "
                    "(spendtrail reconcile --period ... --bill ...)",
                )
            )
        elif row.result != "pass":
            found.append(
                Blocker(
                    "reconciliation_failed", f"{provider}: reconciliation {row.id} is {row.result}"
                )
            )
        elif spent.get((provider, row.currency), 0) != row.logged_pico:
            found.append(
                Blocker(
                    "reconciliation_stale",
                    f"{provider}: the ledger holds "
                    f"{spent.get((provider, row.currency), 0)} pico-units of "
                    f"{row.currency} now, {row.logged_pico} when reconciliation "
                    f"{row.id} ran (reconcile again)",
                )
            )
    return found


def close_period(
    engine: sa.Engine,
    period: Period,
    *,
    actor: str,
    accept: dict[str, str] | None = None,
    spool_dir: Path | None = None,
    threshold: Fraction = DEFAULT_THRESHOLD,
    true_up_rule: str | None = None,
    reason: str = "",
) -> CloseResult:
    """Close ``period`` (a month), or raise ``CloseError`` naming what blocks it."""
    accept = dict(accept or {})
    if not is_month(period):
        raise CloseError(f"period {period.label!r}: only a month (YYYY-MM) can be closed")
    for code, why in accept.items():
        if code not in BLOCKERS:
            raise CloseError(
                f"--accept {code}: not a blocker; expected one of {', '.join(BLOCKERS)}"
            )
        if not why.strip():
            raise CloseError(f"--accept {code}: give the reason it is accepted")
    with engine.begin() as conn:
        record = period_record(conn, period.label)
        if record is not None and record.closed:
            raise CloseError(
                f"{period.label} is already closed "
                f"({record.closed_at:%Y-%m-%d %H:%M} UTC by {record.closed_by})"
            )
        found = blockers(conn, period, spool_dir=spool_dir, threshold=threshold)
        open_ = [b for b in found if b.code not in accept]
        if open_:
            raise CloseError(
                f"{period.label} cannot be closed: {len(open_)} blocker(s); "
                "fix them or accept each with --accept CODE --reason ...",
                open_,
            )
        stored = run_allocation(conn, period, actor=actor, true_up_rule=true_up_rule)
        closed_at = mark_closed(conn, period.label, actor=actor, accepted=accept)
        snapshots = _snapshot(conn, period, closed_at)
        charges = period_entries(conn, period).charges()
        record_change(
            conn,
            actor=actor,
            action="period.close",
            object_type="period",
            object_id=period.label,
            before={"status": "open"},
            after={
                "status": "closed",
                "entries": len(stored.entries),
                "true_up_rule": stored.true_up_rule,
                "rules_version": stored.rules_version,
                "accepted": accept,
                "blockers": [b.code for b in found],
                "charges_pico": charges,
                "snapshots": {f"{scope} {fmt}": digest for scope, fmt, digest in snapshots},
            },
            reason=reason or "; ".join(f"{code}: {why}" for code, why in accept.items()),
        )
    return CloseResult(period, found, accept, len(stored.entries), charges, snapshots)


def _snapshot(conn: sa.Connection, period: Period, closed_at) -> list[tuple[str, str, str]]:
    """Every statement of the month as it reads at the close: the company's and each
    owner's (application, business unit, cost center, budget owner), four formats each;
    and its FOCUS export (every version), unless retention dropped its events (a reopened
    retired month: it has no export to take)."""
    company = build_statement(conn, period, generated_at=closed_at)
    scopes = scopes_of(company.owners)
    taken = []
    for scope in scopes:
        statement = (
            company
            if scope.is_company
            else build_statement(conn, period, owner=scope, generated_at=closed_at)
        )
        for fmt in SNAPSHOT_FORMATS:
            content = render_statement(statement, fmt)
            taken.append(
                (str(scope), fmt, save_snapshot(conn, period.label, str(scope), fmt, content))
            )
    if period.start not in retired_month_set(conn):
        focus = snapshot_document(conn, period)
        taken.append((SNAPSHOT_SCOPE, SNAPSHOT_FORMAT, save_snapshot(
            conn, period.label, SNAPSHOT_SCOPE, SNAPSHOT_FORMAT, focus)))
    return taken


def reopen_period(engine: sa.Engine, period: Period, *, actor: str, reason: str) -> None:
    if not reason.strip():
        raise CloseError("reopening a closed month needs a reason, for the audit trail")
    with engine.begin() as conn:
        record = period_record(conn, period.label)
        if record is None or not record.closed:
            raise CloseError(f"{period.label} is not closed")
        dropped = mark_reopened(conn, period.label)
        record_change(
            conn,
            actor=actor,
            action="period.reopen",
            object_type="period",
            object_id=period.label,
            before={
                "status": "closed",
                "closed_at": record.closed_at.isoformat(),
                "closed_by": record.closed_by,
                "accepted": record.accepted,
                "snapshots": {f"{d['scope']} {d['format']}": d["sha256"] for d in dropped},
            },
            after={"status": "open"},
            reason=reason,
        )
