"""Drafting a chargeback review note from the ledger: the owner map in effect for the period,
the usage the owner's rollups hold, and the sources the register and the prices used cite.

The draft states no price and no amount: a note carries money only with a source that
supports it, and the ledger's cost is already in the cost report.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import sqlalchemy as sa

from spendtrail.evidence.errors import EvidenceError
from spendtrail.evidence.notes import ReviewNote, SourceRef, usage_month, utc_timestamp
from spendtrail.evidence.store import load_sources, next_review_id
from spendtrail.ledger.costs import is_current
from spendtrail.ledger.registry_versions import load_history
from spendtrail.ledger.schema import cost_entries, events, price_entries, rollups_daily
from spendtrail.periods import Period
from spendtrail.registry import Application, Registry

USAGE_UNIT = "tokens (input + output) per request"


def draft_note(
    conn: sa.Connection,
    owner: str,
    period: str,
    *,
    reviewer_role: str,
    now: datetime | None = None,
    notes: str = "",
    shared_decision: str | None = None,
) -> ReviewNote:
    """A draft note for `owner` (an application, a business unit or the shared pool) and
    `period` (YYYY-MM), unchecked."""
    month = usage_month(period)
    if month is None:
        raise EvidenceError(f"period {period!r}: expected YYYY-MM")
    moment = (now or datetime.now(UTC)).replace(microsecond=0)
    found = load_history(conn).at(datetime.combine(month.end, time(), UTC)
                                          - timedelta(seconds=1))
    if found is None:
        raise EvidenceError("no registry loaded; `spendtrail registry load FILE` first")
    version, registry = found
    apps, rule = _owner_map(registry, owner, version)
    shared = owner == registry.shared_pool.id
    usage = _usage(conn, month, apps)
    summary = (f"Drafted from the ledger: {usage['events']} requests, {usage['input']:,} input "
               f"and {usage['output']:,} output tokens allocated in {period}.")
    if usage["quarantined"]:
        summary += (f" {usage['quarantined']} quarantined requests name this owner but are "
                    "held out until the exception queue resolves them.")
    return ReviewNote(
        review_id=next_review_id(conn, moment.date()),
        usage_period=period,
        team_owner=owner,
        allocation_rule=rule,
        usage_unit_checked=USAGE_UNIT,
        source_url_checked=_sources(conn, month, apps),
        reviewed_at=utc_timestamp(moment),
        reviewer_role=reviewer_role,
        notes=" ".join(part for part in (summary, notes.strip()) if part),
        shared=shared,
        shared_decision=shared_decision,
    )


def _owner_map(
    registry: Registry, owner: str, version: int
) -> tuple[list[str], str]:
    """The applications `owner` covers and the allocation rule that maps them to it."""
    pool = registry.shared_pool
    if owner == pool.id:
        return [pool.id], f"shared pool {pool.id} (registry v{version})"
    app: Application | None = registry.applications.get(owner)
    if app is not None:
        return [app.id], (
            f"owner map: application {app.id} to business unit {app.business_unit}, cost "
            f"center {app.cost_center}, budget owner {app.budget_owner} (registry v{version})")
    if owner in registry.business_units:
        apps = sorted(a.id for a in registry.applications.values() if a.business_unit == owner)
        return apps, (
            f"owner map: applications {', '.join(apps) or 'none'} to business unit {owner} "
            f"(registry v{version})")
    raise EvidenceError(f"owner {owner!r}: not an application, business unit or the shared "
                        f"pool in registry v{version}")


def _usage(conn: sa.Connection, month: Period, apps: list[str]) -> dict[str, int]:
    r = rollups_daily.c
    quarantined = r.allocation_status == "quarantined"
    query = sa.select(
        sa.func.coalesce(sa.func.sum(sa.case((quarantined, 0), else_=r.events)), 0),
        sa.func.coalesce(sa.func.sum(sa.case((quarantined, 0), else_=r.input_tokens)), 0),
        sa.func.coalesce(sa.func.sum(sa.case((quarantined, 0), else_=r.output_tokens)), 0),
        sa.func.coalesce(sa.func.sum(sa.case((quarantined, r.events), else_=0)), 0),
    ).where(r.day >= month.start, r.day < month.end, r.application.in_(apps))
    total, tokens_in, tokens_out, held = conn.execute(query).one()
    return {"events": int(total), "input": int(tokens_in), "output": int(tokens_out),
            "quarantined": int(held)}


def _sources(conn: sa.Connection, month: Period, apps: list[str]) -> tuple[SourceRef, ...]:
    """Every registered source, then the sources of the prices that priced the usage."""
    refs = {item.source.id: SourceRef(item.source.id, item.source.url, item.source.accessed)
            for item in load_sources(conn)}
    e, c, p = events.c, cost_entries.c, price_entries.c
    used = conn.execute(
        sa.select(p.source_id, p.source_url, p.checked_at).distinct()
        .select_from(events.join(cost_entries, sa.and_(c.event_id == e.event_id, is_current()))
                     .join(price_entries, p.id == c.price_entry_id))
        .where(e.day >= month.start, e.day < month.end, e.application.in_(apps))
        .order_by(p.source_url)
    )
    urls = {ref.url for ref in refs.values()}
    extra = []
    for source_id, url, checked in used:
        if source_id in refs or (source_id is None and url in urls):
            continue
        extra.append(SourceRef(source_id, url, checked))
        urls.add(url)
    return (*refs.values(), *extra)
