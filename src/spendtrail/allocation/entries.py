"""A month's allocation, computed once and stored as entries; what every report reads.

For a period, from the daily rollups, the exception queue, the shared-cost rules and the
reconciled bills:

- **direct**: each application's own allocated usage (per currency; unpriced usage as an
  entry of currency '' with its event count, never as 0);
- **reassigned**: quarantined usage the exception queue assigned to an application;
- **shared**: each shared-pool charge split by its rule (rule id and version, origin
  charge, exact ratio), children summing exactly to the charge (``shared.py``);
- **true_up**: per provider whose latest reconciliation of exactly this month passed, the
  bill total minus the ledger total for that provider, carried to owners by the true-up
  rule (``true_up.py``), so the owners' charges add up to the invoice;
- **adjustment**: in the first open month after a closed one, what late events and
  repricings changed in the closed month, entry by entry, naming the month (and entry) it
  adjusts;
- charged to no owner: **quarantined** usage still in the queue and **unallocated_pool**
  cost no rule split.

So the entries of a month add up to its ledger total, plus its true-ups and adjustments.
``run_allocation`` stores them (an open month only); ``period_entries`` is what reports
read: a closed month's stored entries, an open month's stored entries while the books they
were computed from (``basis``) are unchanged, else the same computation in memory.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, replace
from fractions import Fraction

import sqlalchemy as sa

from spendtrail.allocation.coverage import coverage
from spendtrail.allocation.rule_store import latest_version, stored_version
from spendtrail.allocation.rules import Rule
from spendtrail.allocation.shared import (
    Child,
    OriginCharge,
    SharedAllocation,
    Uncovered,
    apply_rules,
)
from spendtrail.allocation.true_up import DEFAULT_TRUE_UP, check_rule, true_up
from spendtrail.errors import SpendtrailError
from spendtrail.ledger.allocation_entries import (
    ADJUSTMENT,
    Entry,
    PeriodRecord,
    adjustments_of,
    closed_periods,
    late_changes,
    load_entries,
    period_record,
    save_entries,
)
from spendtrail.ledger.registry_versions import load_history, registry_at_end
from spendtrail.ledger.schema import reallocations, reconciliations, rollups_daily
from spendtrail.periods import Period, parse_period
from spendtrail.registry import Registry

Money = dict[str, int]


@dataclass(frozen=True)
class PeriodEntries:
    """A period's entries and where they come from: ``closed`` (stored, final), ``stored``
    (stored, still current), ``computed`` (in memory: not stored, or stored from books that
    have changed since)."""

    period: Period
    entries: list[Entry]
    shared: SharedAllocation
    source: str
    rules_version: int | None
    rules_source: str | None
    true_up_rule: str
    record: PeriodRecord | None
    basis: str = ""

    @property
    def closed(self) -> bool:
        return self.source == "closed"

    def charges(self) -> dict[str, Money]:
        """Application -> currency -> its charges (every charged kind), pico-units."""
        result: dict[str, Money] = defaultdict(lambda: defaultdict(int))
        for entry in self.entries:
            if entry.charged and entry.currency:
                result[entry.application][entry.currency] += entry.amount_pico
        return {app: dict(money) for app, money in sorted(result.items())}

    def of(self, *kinds: str) -> list[Entry]:
        return [e for e in self.entries if e.kind in kinds]


def is_month(period: Period) -> bool:
    return parse_period(period.label) == period and len(period.label) == 7


def period_entries(
    conn: sa.Connection,
    period: Period,
    *,
    rules: list[Rule] | None = None,
    rules_source: str | None = None,
) -> PeriodEntries:
    """What reports read for ``period``. ``rules`` given: computed with them (a what-if;
    refused for a closed month)."""
    record = period_record(conn, period.label) if is_month(period) else None
    if rules is not None:
        if record is not None and record.closed:
            raise SpendtrailError(
                f"{period.label} is closed: its allocation is final and "
                "cannot be recomputed with other rules"
            )
        return compute_entries(conn, period, rules=rules, rules_source=rules_source)
    if record is None:
        return compute_entries(conn, period)
    if not record.closed:
        basis = _basis(conn, period, record.true_up_rule)
        if basis != record.basis:
            return compute_entries(conn, period, true_up_rule=record.true_up_rule)
    entries = load_entries(conn, period.label)
    rules_found = _rules_of(conn, record.rules_version)
    return PeriodEntries(
        period,
        entries,
        _shared_from(period, entries, rules_found),
        "closed" if record.closed else "stored",
        record.rules_version,
        _rules_text(conn, record.rules_version),
        record.true_up_rule,
        record,
        basis=record.basis,
    )


def run_allocation(
    conn: sa.Connection,
    period: Period,
    *,
    actor: str,
    true_up_rule: str | None = None,
) -> PeriodEntries:
    """(Re)compute an open month's entries and store them, in the caller's transaction."""
    if not is_month(period):
        raise SpendtrailError(
            f"period {period.label!r}: allocation entries are stored per month (YYYY-MM)"
        )
    record = period_record(conn, period.label)
    rule = true_up_rule or (record.true_up_rule if record else DEFAULT_TRUE_UP)
    computed = compute_entries(conn, period, true_up_rule=rule)
    save_entries(
        conn,
        period.label,
        computed.entries,
        basis=computed.basis,
        true_up_rule=rule,
        rules_version=computed.rules_version,
        actor=actor,
    )
    return replace(
        computed,
        source="stored",
        record=period_record(conn, period.label),
        entries=load_entries(conn, period.label),
    )


def compute_entries(
    conn: sa.Connection,
    period: Period,
    *,
    rules: list[Rule] | None = None,
    rules_source: str | None = None,
    true_up_rule: str = DEFAULT_TRUE_UP,
) -> PeriodEntries:
    check_rule(true_up_rule)
    version, from_store = None, rules is None
    if rules is None:
        stored = latest_version(conn)
        if stored is not None:
            rules, version = stored.rules, stored.version
            rules_source = _rules_text(conn, version)
    registry = registry_at_end(conn, period)
    entries, shared = _own_entries(conn, period, rules or [], version, true_up_rule, registry)
    if is_month(period):
        entries += _adjustments(conn, period, registry)
    entries = [_with_owner(e, registry) for e in entries]
    # Only entries from the stored rules can be stored, so only they need a basis.
    return PeriodEntries(
        period,
        entries,
        shared,
        "computed",
        version,
        rules_source,
        true_up_rule,
        None,
        basis=_basis(conn, period, true_up_rule) if from_store else "",
    )


# -- one month's own entries -------------------------------------------------------------


def _own_entries(
    conn: sa.Connection,
    period: Period,
    rules: list[Rule],
    version: int | None,
    true_up_rule: str,
    registry: Registry | None,
) -> tuple[list[Entry], SharedAllocation]:
    shared = apply_rules(conn, rules, period)
    rows = _rollup_sums(conn, period)
    pools = (
        {rule.pool for rule in rules}
        | {u.pool for u in shared.uncovered}
        | {app for _, _, status, app, *_ in rows if status == "shared"}
    )
    direct: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for _, currency, status, app, count, unpriced, amount in rows:
        if status == "quarantined" or app in pools:
            continue  # quarantined: from coverage, net of reassignments; pools: split below
        totals = direct[app, currency]
        totals[0] += int(count)
        totals[1] += int(unpriced)
        totals[2] += int(amount)
    entries = [
        Entry("direct", app, currency, amount, events=count, unpriced_events=unpriced)
        for (app, currency), (count, unpriced, amount) in sorted(direct.items())
    ]
    for line in coverage(conn, period).lines:
        if line.status in ("reallocated", "quarantined"):
            kind = "reassigned" if line.status == "reallocated" else "quarantined"
            entries.append(
                Entry(kind, line.owner, line.currency, line.cost_pico, events=line.events)
            )
    for charge in shared.charges:
        common = {
            "pool": charge.rule.pool,
            "rule_id": charge.rule.id,
            "rules_version": version,
            "method": charge.rule.method,
            "origin": charge.id,
            "day_from": charge.start,
            "day_to": charge.end,
        }
        if charge.children:
            entries += [
                Entry(
                    "shared",
                    child.recipient,
                    charge.currency,
                    child.amount_pico,
                    ratio=str(child.ratio),
                    **common,
                )
                for child in charge.children
            ]
        else:
            entries.append(
                Entry(
                    "unallocated_pool",
                    charge.rule.pool,
                    charge.currency,
                    charge.amount_pico,
                    detail=charge.detail,
                    **common,
                )
            )
    entries += [
        Entry(
            "unallocated_pool",
            u.pool,
            u.currency,
            u.amount_pico,
            pool=u.pool,
            detail="no rule covers these days",
        )
        for u in shared.uncovered
    ]
    central = registry.shared_pool.id if registry is not None else "shared"
    ledger: dict[tuple[str, str], int] = defaultdict(int)
    for provider, currency, *_, amount in rows:
        ledger[provider, currency] += amount
    entries += _true_ups(conn, period, entries, ledger, true_up_rule, central)
    return entries, shared


def _rollup_sums(conn: sa.Connection, period: Period) -> list[tuple]:
    """(provider, currency, allocation status, application, events, unpriced events,
    amount) summed over the period's rollups, in order."""
    r = rollups_daily.c
    keys = (r.provider, r.currency, r.allocation_status, r.application)
    rows = conn.execute(
        sa.select(
            *keys,
            sa.func.sum(r.events),
            sa.func.sum(r.unpriced_events),
            sa.func.sum(r.amount_pico),
        )
        .where(r.day >= period.start, r.day < period.end)
        .group_by(*keys)
        .order_by(*keys)
    )
    return [(*row[:4], *map(int, row[4:])) for row in rows]


def _true_ups(
    conn: sa.Connection,
    period: Period,
    entries: list[Entry],
    ledger: dict[tuple[str, str], int],
    rule: str,
    central: str,
) -> list[Entry]:
    found = []
    for record_id, provider, currency, billed, summary in _passing_reconciliations(conn, period):
        logged = ledger.get((provider, currency), 0)
        charged = {e.application for e in entries if e.charged and e.currency == currency}
        billed_by_owner = {
            o["owner"]: int(o["billed_pico"])
            for o in json.loads(summary)["owners"]
            if o["owner"] in charged
        }
        for share in true_up(billed - logged, billed_by_owner, rule, central):
            found.append(
                Entry(
                    "true_up",
                    share.owner,
                    currency,
                    share.amount_pico,
                    method=rule,
                    ratio=str(share.ratio),
                    origin=f"reconciliation {record_id} ({provider})",
                    reconciliation_id=record_id,
                    detail=f"billed {billed} - ledger {logged} pico-units of {currency}"
                    + (f"; {share.note}" if share.note else ""),
                )
            )
    return found


def _passing_reconciliations(conn: sa.Connection, period: Period) -> list[tuple]:
    """(id, provider, currency, billed_pico, summary) of the latest reconciliation per
    provider of exactly this period, when that one passed."""
    r = reconciliations.c
    latest = (
        sa.select(sa.func.max(r.id))
        .where(r.period_start == period.start, r.period_end == period.end)
        .group_by(r.provider)
    )
    return list(
        conn.execute(
            sa.select(r.id, r.provider, r.currency, r.billed_pico, r.summary)
            .where(r.id.in_(latest), r.result == "pass")
            .order_by(r.provider)
        )
    )


# -- adjustments of closed months --------------------------------------------------------


def _adjusted_months(conn: sa.Connection, period: Period) -> list[str]:
    """Closed months before ``period`` whose first open month after them is ``period``."""
    closed = set(closed_periods(conn))
    if period.label in closed:
        return []
    found = []
    month = _previous(period.label)
    while month in closed:
        found.append(month)
        month = _previous(month)
    return sorted(found)


def _adjustments(conn: sa.Connection, period: Period, registry: Registry | None) -> list[Entry]:
    found = []
    for month in _adjusted_months(conn, period):
        record = period_record(conn, month)
        assert record is not None and record.closed_at is not None
        closed = parse_period(month)
        now, _ = _own_entries(
            conn,
            closed,
            _rules_of(conn, record.rules_version) or [],
            record.rules_version,
            record.true_up_rule,
            registry_at_end(conn, closed),
        )
        before = [e for e in load_entries(conn, month) if e.kind != ADJUSTMENT]
        before += [
            replace(e, kind=e.adjusts_kind)
            for e in adjustments_of(conn, month, besides=period.label)
        ]
        change: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
        for sign, items in ((1, now), (-1, before)):
            for e in items:
                totals = change[_key(e)]
                totals[0] += sign * e.amount_pico
                totals[1] += sign * (e.events + e.unpriced_events)
        ids = {_key(e): e.id for e in load_entries(conn, month) if e.kind != ADJUSTMENT}
        late, repriced = late_changes(conn, closed.start, closed.end, record.closed_at)
        why = (
            f"{month} changed after its close on {record.closed_at:%Y-%m-%d}: {late} "
            f"events ingested late, {repriced} cost entries repriced"
        )
        for key, (amount, count) in sorted(change.items(), key=lambda kv: _sortable(kv[0])):
            if amount or count:
                kind, app, currency, pool, rule_id, origin, reconciliation = key
                found.append(
                    Entry(
                        ADJUSTMENT,
                        app,
                        currency,
                        amount,
                        events=count,
                        pool=pool,
                        rule_id=rule_id,
                        origin=origin,
                        reconciliation_id=reconciliation,
                        adjusts_period=month,
                        adjusts_kind=kind,
                        adjusts_entry_id=ids.get(key),
                        detail=why,
                    )
                )
    return found


def _key(e: Entry) -> tuple:
    return (e.kind, e.application, e.currency, e.pool, e.rule_id, e.origin, e.reconciliation_id)


def _sortable(key: tuple) -> tuple:
    return tuple("" if v is None else str(v) for v in key)


def _previous(month: str) -> str:
    year, number = int(month[:4]), int(month[5:7])
    return f"{year - (number == 1)}-{12 if number == 1 else number - 1:02d}"


# -- what the entries were computed from -------------------------------------------------


def _basis(conn: sa.Connection, period: Period, true_up_rule: str) -> str:
    """A fingerprint of the books the entries depend on: the period's (and the adjusted
    closed months') rollup sums and reassignments, the latest rules and registry versions,
    the reconciliations, the true-up rule."""
    months = [period, *(parse_period(m) for m in _adjusted_months(conn, period))]
    m, rec = reallocations.c, reconciliations.c
    parts: dict[str, object] = {"true_up": true_up_rule}
    for month in months:
        sums = _rollup_sums(conn, month)
        moved = conn.execute(
            sa.select(sa.func.count(), sa.func.sum(m.amount_pico)).where(
                m.day >= month.start, m.day < month.end
            )
        ).one()
        recs = conn.execute(
            sa.select(rec.id)
            .where(rec.period_start == month.start, rec.period_end == month.end)
            .order_by(rec.id)
        ).scalars()
        parts[month.label] = [
            [list(map(str, row)) for row in sums],
            list(map(str, moved)),
            list(recs),
        ]
    stored = latest_version(conn)
    parts["rules"] = None if stored is None else stored.version
    latest = load_history(conn).latest()
    parts["registry"] = None if latest is None else latest[0]
    return json.dumps(parts, sort_keys=True)


# -- shared charges rebuilt from stored entries ------------------------------------------


def _shared_from(
    period: Period, entries: list[Entry], rules: list[Rule] | None
) -> SharedAllocation:
    """The period's shared-cost charges as ``apply_rules`` returned them when the entries
    were computed: every shared and unallocated pool entry, grouped by origin charge."""
    by_id = {rule.id: rule for rule in rules or ()}
    children: dict[str, list[Entry]] = defaultdict(list)
    charges, uncovered = [], []
    for e in entries:
        if e.kind == "shared":
            children[e.origin].append(e)
        elif e.kind == "unallocated_pool" and not e.rule_id:
            uncovered.append(Uncovered(e.pool, e.currency, e.amount_pico))
        elif e.kind == "unallocated_pool":
            status = "held" if e.method == "hold" else "unsplit"
            charges.append(
                OriginCharge(
                    _rule(by_id, e),
                    e.currency,
                    e.day_from,
                    e.day_to,
                    e.amount_pico,
                    status,
                    (),
                    e.detail,
                )
            )
    for items in children.values():
        first = items[0]
        charges.append(
            OriginCharge(
                _rule(by_id, first),
                first.currency,
                first.day_from,
                first.day_to,
                sum(e.amount_pico for e in items),
                "central" if first.method == "central" else "split",
                tuple(Child(e.application, e.amount_pico, Fraction(e.ratio)) for e in items),
            )
        )
    charges.sort(key=lambda c: (c.rule.pool, c.start, c.currency))
    return SharedAllocation(period, tuple(charges), tuple(uncovered))


def _rule(by_id: dict[str, Rule], entry: Entry) -> Rule:
    found = by_id.get(entry.rule_id)
    if found is not None:
        return found
    # Rules versions are only ever added, so this is a ledger edited by hand: keep what the
    # entry knows.
    method = entry.method if entry.method in ("central", "hold") else "fixed"
    return Rule(entry.rule_id, entry.pool, method, entry.day_from, entry.day_to, "", entry.day_from)


def _rules_of(conn: sa.Connection, version: int | None) -> list[Rule] | None:
    stored = None if version is None else stored_version(conn, version)
    return None if stored is None else stored.rules


def _rules_text(conn: sa.Connection, version: int | None) -> str | None:
    stored = None if version is None else stored_version(conn, version)
    if stored is None:
        return None
    return f"stored version {stored.version} (loaded {stored.loaded_at:%Y-%m-%d})"


# -- owners ------------------------------------------------------------------------------


def _with_owner(entry: Entry, registry: Registry | None) -> Entry:
    """The owner's business unit, cost center and budget owner from the registry."""
    if registry is None or not entry.charged:
        return entry
    known = registry.applications.get(entry.application) or (
        registry.shared_pool if registry.shared_pool.id == entry.application else None
    )
    if known is None:
        return entry
    return replace(
        entry,
        business_unit=known.business_unit,
        cost_center=known.cost_center,
        budget_owner=known.budget_owner,
    )
