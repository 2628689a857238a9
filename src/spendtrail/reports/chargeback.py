"""Showback/chargeback statement per owner and period, built from the daily rollups.

Every amount is integer pico-units per currency, so the statement ties out exactly: for the
company, owners' direct cost + shared allocations + quarantined + unallocated pool == ledger
total; for a scope (an application, budget owner, cost center or business unit), its lines
add up to its own total and nothing of other owners is kept.
``sections`` turns a statement into titled tables of exact decimal strings (JSON), and
``line_items`` into one row per charge (CSV); ``statement_view`` is what people read.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from fractions import Fraction

import sqlalchemy as sa

from spendtrail.allocation.coverage import Coverage, OwnerLine, coverage, percent
from spendtrail.allocation.entries import PeriodEntries, period_entries
from spendtrail.allocation.rules import Rule
from spendtrail.allocation.shared import OriginCharge, SharedAllocation, ratio_text
from spendtrail.budgets import Budget, BudgetPeriod, BudgetState, ledger_spend, list_budgets
from spendtrail.errors import SpendtrailError
from spendtrail.ledger.allocation_entries import Entry
from spendtrail.ledger.registry_versions import registry_at_end
from spendtrail.ledger.schema import (
    price_entries,
    prices_used_daily,
    reconciliations,
)
from spendtrail.money import from_pico, plain_decimal
from spendtrail.periods import Period
from spendtrail.reconcile import Reconciliation, load_reconciliation
from spendtrail.registry import Registry
from spendtrail.reports.costs import CostRow, cost_report

# Seed 000: a statement is evidence to discuss, not a decision anyone has taken.
NOT_ASSERTED = (
    "This statement does not prove that any owner accepted the chargeback; it is evidence "
    "for the review, not its outcome.",
    "It asserts no provider price, discount, limit or billing treatment beyond the price "
    "entries listed with their sources.",
    "Quarantined and unpriced usage is shown on its own lines; it is not charged to any "
    "owner it resembles.",
    "Unless a reconciliation is listed as pass, the ledger total has not been checked "
    "against a provider bill.",
)
Money = dict[str, int]  # currency -> pico-units

# What a statement can be scoped to: the owner attribute it selects on, and how people
# write it after --owner (``cost-center:CC-100``).
SCOPE_KINDS = {
    "application": "application",
    "budget-owner": "budget_owner",
    "cost-center": "cost_center",
    "business-unit": "business_unit",
}
COMPANY = "company"


@dataclass(frozen=True, slots=True)
class Scope:
    """Whose statement: the whole company, or the owners with ``attribute == value``."""

    attribute: str = COMPANY  # application | budget_owner | cost_center | business_unit
    value: str = ""

    @property
    def is_company(self) -> bool:
        return self.attribute == COMPANY

    def covers(self, owner: OwnerStatement) -> bool:
        return self.is_company or getattr(owner, self.attribute) == self.value

    def __str__(self) -> str:
        if self.is_company:
            return COMPANY
        return f"{self.attribute.replace('_', '-')}:{self.value}"


def parse_scope(text: str | None) -> Scope:
    """``company`` (or nothing), ``application:ID``, ``budget-owner:ID``, ``cost-center:ID``,
    ``business-unit:ID``; a bare id is an application."""
    if text is None or text == COMPANY:
        return Scope()
    kind, sep, value = text.partition(":")
    if not sep:
        kind, value = "application", text
    if kind not in SCOPE_KINDS or not value:
        raise SpendtrailError(
            f"owner {text!r}: expected company, or one of "
            f"{', '.join(f'{k}:ID' for k in SCOPE_KINDS)} (ids from the registry)")
    return Scope(SCOPE_KINDS[kind], value)


@dataclass(frozen=True, slots=True)
class Received:
    """An owner's share of one shared-pool charge."""

    charge: OriginCharge
    amount_pico: int
    ratio: Fraction


@dataclass
class UsageLine:
    """An owner's own (direct) usage of one model in one environment and workload class,
    through one provider (so one currency, as a rule)."""

    model: str
    environment: str
    workload_class: str
    provider: str
    events: int = 0
    unpriced_events: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: Money = field(default_factory=lambda: defaultdict(int))


@dataclass(frozen=True, slots=True)
class BudgetLine:
    """A budget over the statement's period: its worst sub-period (a day, a week...) and the
    one running now, if the statement's period holds it."""

    worst: BudgetState
    current: BudgetState | None
    periods: int  # sub-periods of the budget that overlap the statement's period
    over_limit: int  # of those, how many reached the limit


@dataclass
class OwnerStatement:
    owner: str  # the application (or a shared pool charged centrally)
    business_unit: str = ""
    cost_center: str = ""
    budget_owner: str = ""
    # Registry names of the above, for people; the ids stay for machines.
    name: str = ""
    business_unit_name: str = ""
    cost_center_name: str = ""
    budget_owner_name: str = ""
    events: int = 0
    unpriced_events: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    direct: Money = field(default_factory=lambda: defaultdict(int))
    reallocated: Money = field(default_factory=lambda: defaultdict(int))  # exception queue
    received: list[Received] = field(default_factory=list)
    true_up: Money = field(default_factory=lambda: defaultdict(int))  # bill minus ledger
    adjustments: Money = field(default_factory=lambda: defaultdict(int))  # of closed months
    true_ups: list[Entry] = field(default_factory=list)
    adjusted: list[Entry] = field(default_factory=list)
    unpriced_by_model: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    usage: dict[tuple[str, str, str, str], UsageLine] = field(default_factory=dict)
    budgets: list[BudgetLine] = field(default_factory=list)

    @property
    def application(self) -> str:  # so a budget's scope names an attribute of every owner
        return self.owner

    def total(self) -> Money:
        result: Money = defaultdict(int)
        for amounts in (self.direct, self.reallocated, self.true_up, self.adjustments):
            for currency, pico in amounts.items():
                result[currency] += pico
        for item in self.received:
            result[item.charge.currency] += item.amount_pico
        return result


@dataclass(frozen=True, slots=True)
class PriceSource:
    id: str
    kind: str
    provider: str
    source_url: str
    checked_at: date
    checked_by: str


@dataclass
class Statement:
    period: Period
    generated_at: datetime
    scope: Scope
    scope_name: str  # the registry's name of the scope's value ("Consumer Products")
    closed: bool  # the period is closed: its figures are final
    rules_source: str | None  # where the shared-cost rules came from, for the header
    owners: list[OwnerStatement]
    pools: Money  # shared-pool usage before its split
    shared: SharedAllocation
    quarantined: list[OwnerLine]
    unpriced_by_model: dict[str, int]
    coverage: Coverage
    reconciliations: list[Reconciliation]
    price_sources: list[PriceSource]
    by_day: list[tuple[str, Money]]  # the company's ledger spend, or the scope's direct spend
    ledger_total: Money
    entries: PeriodEntries | None = None  # the allocation entries the figures come from
    pool_name: str = ""
    # Registry names of applications, for usage captured under a known application that was
    # quarantined anyway (a refused environment, say).
    application_names: dict[str, str] = field(default_factory=dict)

    def currencies(self) -> list[str]:
        """The currencies this statement shows amounts in."""
        found = set(self.ledger_total) if self.scope.is_company else set()
        for owner in self.owners:
            found |= {c for c, pico in owner.total().items() if c}
        return sorted(c for c in found if c)

    def total(self) -> Money:
        return _sum(o.total() for o in self.owners)

    def unallocated_pool(self) -> Money:
        """Pool cost no rule split: held, unsplittable, or on days no rule covers."""
        result: Money = defaultdict(int)
        for charge in self.shared.charges:
            if not charge.children:
                result[charge.currency] += charge.amount_pico
        for item in self.shared.uncovered:
            result[item.currency] += item.amount_pico
        return result

    def tie_out(self) -> dict[str, dict[str, int]]:
        """Per currency, each part of the total; ``difference`` is 0 when it ties. The
        company's total is the ledger's; a scope's is its owners' total, so a scope ties
        out to itself and names no other owner's figure."""
        parts: dict[str, Money] = {
            "direct": _sum(o.direct for o in self.owners),
            "reallocated": _sum(o.reallocated for o in self.owners),
            "shared_allocations": _sum(
                {c.charge.currency: c.amount_pico} for o in self.owners for c in o.received),
            "true_up": _sum(o.true_up for o in self.owners),
            "adjustments": _sum(o.adjustments for o in self.owners),
        }
        if self.scope.is_company:
            parts["quarantined"] = _sum({q.currency: q.cost_pico} for q in self.quarantined)
            parts["unallocated_pool"] = self.unallocated_pool()
            parts["adjustments_not_charged"] = self.adjustments_not_charged()
            # The ledger's total, and what the true-ups and adjustments add to it.
            name, total = "ledger_total", _sum([
                self.ledger_total, parts["true_up"], parts["adjustments"],
                parts["adjustments_not_charged"]])
        else:
            name, total = "statement_total", _sum(
                _sum(u.cost for u in o.usage.values()) for o in self.owners)
            total = _sum([total, *(parts[key] for key in parts if key != "direct")])
        result = {}
        for currency in sorted(set(total) | {c for p in parts.values() for c in p}):
            if not currency:
                continue
            row = {key: amounts.get(currency, 0) for key, amounts in parts.items()}
            row[name] = total.get(currency, 0)
            row["difference"] = row[name] - sum(v for k, v in row.items() if k != name)
            result[currency] = row
        return result

    def adjustments_not_charged(self) -> Money:
        """Adjustments of closed months' quarantined or unallocated pool cost."""
        if self.entries is None:
            return {}
        return _sum({e.currency: e.amount_pico} for e in self.entries.of("adjustment")
                    if not e.charged and e.currency)

    def rollup(self, dimension: str) -> dict[str, Money]:
        """Owner totals summed by business_unit, cost_center or budget_owner. An owner whose
        usage is all unpriced keeps its key, with no amount."""
        result: dict[str, Money] = defaultdict(lambda: defaultdict(int))
        for owner in self.owners:
            target = result[getattr(owner, dimension) or "(none)"]
            for currency, pico in owner.total().items():
                target[currency] += pico
        return dict(sorted(result.items()))


def build_statement(
    conn: sa.Connection,
    period: Period,
    *,
    rules: list[Rule] | None = None,
    rules_file: str | None = None,
    owner: Scope | None = None,
    generated_at: datetime | None = None,
) -> Statement:
    """The statement for ``period`` and ``owner`` (default: the company), from the period's
    allocation entries (``allocation.entries``): its charges are the entries', so every
    report gives an owner the same figure. Without ``rules`` the entries follow the stored
    shared-cost rules; given ``rules`` (``[]``: none) they are computed with those."""
    scope = owner or Scope()
    registry = registry_at_end(conn, period)
    entries = period_entries(conn, period, rules=rules, rules_source=rules_file)
    shared, rules_source = entries.shared, entries.rules_source
    dims = ("application", "allocation_status", "model", "environment", "workload_class",
            "provider", "business_unit", "cost_center", "budget_owner")
    report = cost_report(conn, period, dims)
    pools = _pools(entries, report.rows)
    owners = {name: _owner(name, registry)
              for name in sorted(_owner_names(entries, report.rows, pools))}

    pool_cost: Money = defaultdict(int)
    unpriced: dict[str, int] = defaultdict(int)
    for row in report.rows:
        key = row.key
        if row.unpriced_events:
            unpriced[key["model"]] += row.unpriced_events
        if key["allocation_status"] == "quarantined":
            continue  # its own line, from coverage (net of exception-queue reallocations)
        if key["application"] in pools:
            for currency, pico in row.cost_pico.items():
                pool_cost[currency] += pico
            continue
        target = owners[key["application"]]
        target.events += row.events
        target.unpriced_events += row.unpriced_events
        target.input_tokens += row.input_tokens
        target.output_tokens += row.output_tokens
        if row.unpriced_events:
            target.unpriced_by_model[key["model"]] += row.unpriced_events
        usage_key = (key["model"], key["environment"], key["workload_class"], key["provider"])
        line = target.usage.setdefault(usage_key, UsageLine(*usage_key))
        line.events += row.events
        line.unpriced_events += row.unpriced_events
        line.input_tokens += row.input_tokens
        line.output_tokens += row.output_tokens
        for currency, pico in row.cost_pico.items():
            if currency:
                line.cost[currency] += pico

    kpis = coverage(conn, period)
    for entry in entries.entries:
        if not entry.charged or not entry.currency:
            continue
        target = owners[entry.application]
        kind = entry.adjusts_kind if entry.kind == "adjustment" else entry.kind
        if entry.kind == "adjustment":
            target.adjustments[entry.currency] += entry.amount_pico
            target.adjusted.append(entry)
        elif kind == "direct":
            target.direct[entry.currency] += entry.amount_pico
        elif kind == "reassigned":
            target.reallocated[entry.currency] += entry.amount_pico
        elif kind == "true_up":
            target.true_up[entry.currency] += entry.amount_pico
            target.true_ups.append(entry)
    for charge in shared.charges:
        for child in charge.children:
            owners[child.recipient].received.append(
                Received(charge, child.amount_pico, child.ratio))

    selected = [owner for owner in owners.values() if scope.covers(owner)]
    names = {o.owner for o in selected}
    _attach_budgets(conn, selected, period, generated_at or datetime.now(UTC))
    if scope.is_company:
        days = cost_report(conn, period, ("day",))
        by_day = [(row.key["day"], dict(row.cost_pico)) for row in days.rows]
        quarantined = [q for q in kpis.lines if q.status == "quarantined"]
        sources = _price_sources(conn, period)
        unpriced_models = dict(sorted(unpriced.items()))
    else:
        by_day = _direct_by_day(conn, period, names)
        # Usage captured as the scope's own but quarantined: the owner should know of it.
        quarantined = [q for q in kpis.lines if q.status == "quarantined" and q.owner in names]
        models = {line.model for o in selected for line in o.usage.values()}
        sources = _price_sources(conn, period, models)
        unpriced_models = dict(sorted(_sum(o.unpriced_by_model for o in selected).items()))
    return Statement(
        period=period,
        generated_at=generated_at or datetime.now(UTC),
        scope=scope,
        scope_name=_scope_name(scope, registry),
        closed=entries.closed,
        rules_source=rules_source,
        owners=selected,
        pools=dict(pool_cost),
        shared=shared,
        quarantined=quarantined,
        unpriced_by_model=unpriced_models,
        coverage=kpis,
        reconciliations=_reconciliations(conn, period),
        price_sources=sources,
        by_day=by_day,
        ledger_total={c: pico for c, pico in report.totals.cost_pico.items() if c},
        pool_name=registry.shared_pool.name if registry else "",
        application_names={a.id: a.name for a in registry.applications.values()}
        if registry else {},
        entries=entries,
    )


def statement_owners(conn: sa.Connection, period: Period) -> list[OwnerStatement]:
    """The owners (applications, with their registry owners) the period's company statement
    has a line for (``_owner_names``, as ``build_statement`` finds them). Read from the
    rollups and the entries only: nothing is built or rendered, so listing stays cheap."""
    registry = registry_at_end(conn, period)
    entries = period_entries(conn, period)
    rows = cost_report(conn, period, ("application", "allocation_status")).rows
    names = _owner_names(entries, rows, _pools(entries, rows))
    return [_owner(name, registry) for name in sorted(names)]


def _owner_names(entries: PeriodEntries, rows: Iterable[CostRow], pools: set[str]) -> set[str]:
    """The applications with a line in the company statement: usage outside the quarantine
    and the shared pools, a charge of the allocation, a share of a pool."""
    names = {row.key["application"] for row in rows
             if row.key["allocation_status"] != "quarantined"
             and row.key["application"] not in pools}
    names |= {e.application for e in entries.entries if e.charged and e.currency}
    names |= {child.recipient for charge in entries.shared.charges for child in charge.children}
    return names


def _pools(entries: PeriodEntries, rows: Iterable[CostRow]) -> set[str]:
    """The shared pools: their costs are split to owners, never an owner's own line."""
    shared = entries.shared
    return ({c.rule.pool for c in shared.charges} | {u.pool for u in shared.uncovered}
            | {e.pool for e in entries.of("shared", "unallocated_pool")}
            | {row.key["application"] for row in rows
               if row.key["allocation_status"] == "shared"})


def _owner(name: str, registry: Registry | None) -> OwnerStatement:
    known = None
    if registry is not None:
        known = registry.applications.get(name) or (
            registry.shared_pool if registry.shared_pool.id == name else None)
    if known is None or registry is None:
        return OwnerStatement(name, name=name)

    def named(section: str, key: str) -> str:
        entry = getattr(registry, section).get(key)
        return entry.name if entry is not None else key

    return OwnerStatement(
        name, known.business_unit, known.cost_center, known.budget_owner, name=known.name,
        business_unit_name=named("business_units", known.business_unit),
        cost_center_name=named("cost_centers", known.cost_center),
        budget_owner_name=named("budget_owners", known.budget_owner))


def _scope_name(scope: Scope, registry: Registry | None) -> str:
    if scope.is_company:
        return "The company (all owners)"
    sections = {"application": "applications", "budget_owner": "budget_owners",
                "cost_center": "cost_centers", "business_unit": "business_units"}
    entry = getattr(registry, sections[scope.attribute]).get(scope.value) if registry else None
    if entry is None and registry is not None and registry.shared_pool.id == scope.value:
        entry = registry.shared_pool
    return entry.name if entry is not None else scope.value


def _sub_periods(budget: Budget, period: Period) -> list[BudgetPeriod]:
    """The budget's periods (days, weeks, months, its custom range) that overlap ``period``."""
    found: list[BudgetPeriod] = []
    day = period.start
    while day < period.end:
        sub = budget.period_at(datetime.combine(day, time(), UTC))
        if sub is None:
            day += timedelta(days=1)
            continue
        found.append(sub)
        day = sub.end
    return found


def _attach_budgets(conn: sa.Connection, owners: list[OwnerStatement], period: Period,
                    now: datetime) -> None:
    """Budgets whose scope covers the owner, at their worst sub-period of the statement's
    period (a daily budget at 119% one day shows that day), with the current one."""
    lines: dict[str, BudgetLine] = {}
    today = now.astimezone(UTC).date()
    for budget in list_budgets(conn):
        covered = [o for o in owners if getattr(o, budget.scope) == budget.scope_value]
        if not covered:
            continue
        if budget.id not in lines:
            states = [BudgetState(budget, sub, ledger_spend(conn, budget, sub))
                      for sub in _sub_periods(budget, period)]
            if not states:
                continue
            # Worst: the highest share of the limit; of equals, the latest.
            worst = max(reversed(states), key=lambda s: Fraction(s.spent, budget.limit_units))
            current = next((s for s in states if s.period.start <= today < s.period.end), None)
            lines[budget.id] = BudgetLine(
                worst, current, len(states),
                sum(1 for s in states if s.spent >= budget.limit_units))
        for owner in covered:
            owner.budgets.append(lines[budget.id])


def _direct_by_day(conn: sa.Connection, period: Period, applications: set[str]
                   ) -> list[tuple[str, Money]]:
    """The applications' own (direct) spend per day: a scope's chart shows no one else's."""
    report = cost_report(conn, period, ("day", "application", "allocation_status"))
    days: dict[str, Money] = defaultdict(lambda: defaultdict(int))
    for row in report.rows:
        if (row.key["application"] in applications
                and row.key["allocation_status"] == "allocated"):
            for currency, pico in row.cost_pico.items():
                if currency:
                    days[row.key["day"]][currency] += pico
    return [(day, dict(money)) for day, money in sorted(days.items())]


def _reconciliations(conn: sa.Connection, period: Period) -> list[Reconciliation]:
    """The latest record per provider for exactly this period."""
    r = reconciliations.c
    latest = (sa.select(sa.func.max(r.id))
              .where(r.period_start == period.start, r.period_end == period.end)
              .group_by(r.provider))
    records = (load_reconciliation(conn, record_id)
               for record_id in sorted(conn.execute(latest).scalars()))
    return [record for record in records if record is not None]


def _price_sources(conn: sa.Connection, period: Period, models: set[str] | None = None
                   ) -> list[PriceSource]:
    """The price entries the period's usage (of ``models``, default all) was priced with:
    read from prices_used_daily, kept at ingest and repricing, so this is O(days x models),
    not O(events)."""
    u, p = prices_used_daily.c, price_entries.c
    used = (sa.select(u.price_entry_id).distinct()
            .where(u.day >= period.start, u.day < period.end))
    if models is not None:
        used = used.where(u.model.in_(sorted(models)))
    rows = conn.execute(
        sa.select(p.id, p.kind, p.provider, p.source_url, p.checked_at, p.checked_by)
        .where(p.id.in_(used)).order_by(p.id))
    return [PriceSource(*row) for row in rows]


def _sum(items: Iterable[Money]) -> Money:
    result: Money = defaultdict(int)
    for amounts in items:
        for currency, pico in amounts.items():
            result[currency] += pico
    return result


# --- Exact renderings: JSON sections and CSV line items ------------------------------------


@dataclass(frozen=True, slots=True)
class Section:
    key: str
    title: str
    rows: list[dict[str, str]]
    note: str = ""


def amount(pico: int) -> str:
    """Exact decimal string of pico-units, never in exponent form (1000, not 1E+3)."""
    return plain_decimal(from_pico(pico))


def status(statement: Statement) -> str:
    return "final" if statement.closed else "PRELIMINARY"


def header(statement: Statement) -> dict[str, str]:
    """What the statement is about; no paths, database URLs or internal ids."""
    last = date.fromordinal(statement.period.end.toordinal() - 1)
    scope = statement.scope
    return {
        "statement_for": statement.scope_name if scope.is_company
        else f"{statement.scope_name} ({scope.attribute.replace('_', ' ')})",
        "period": f"{statement.period.label} ({statement.period.start} to {last})",
        "status": "final: the period is closed" if statement.closed else
                  "PRELIMINARY: the period is not closed; figures may still change",
        "generated_at": statement.generated_at.strftime("%Y-%m-%d %H:%M UTC"),
        "shared_cost_rules": statement.rules_source or "none (pool cost left unallocated)",
    }


def line_items(statement: Statement) -> list[dict[str, str]]:
    """One row per owner line item; for the company the amounts of every row add up to the
    ledger total, for a scope to its own total."""
    rows = []

    def add(owner: OwnerStatement | None, name: str, line: str, currency: str, pico: int | None,
            events: int | str = "", rule: Rule | None = None, ratio: Fraction | None = None,
            pool: str = "") -> None:
        rows.append({
            "owner": name,
            "owner_name": owner.name if owner else "",
            "business_unit": owner.business_unit if owner else "",
            "cost_center": owner.cost_center if owner else "",
            "budget_owner": owner.budget_owner if owner else "",
            "line": line,
            "pool": pool,
            "rule_id": rule.id if rule else "",
            "method": rule.method if rule else "",
            "ratio": ratio_text(ratio) if ratio is not None else "",
            "currency": currency,
            "amount": "unpriced" if pico is None else amount(pico),
            "events": str(events),
        })

    for o in statement.owners:
        for currency in sorted(o.direct):
            add(o, o.owner, "direct", currency, o.direct[currency], o.events)
        if not o.direct:  # all of its usage unpriced: shown as such, never as 0
            add(o, o.owner, "direct", "", None, o.events)
        for currency, pico in sorted(o.reallocated.items()):
            add(o, o.owner, "reallocated from quarantine", currency, pico)
        for item in o.received:
            add(o, o.owner, "shared allocation", item.charge.currency, item.amount_pico,
                rule=item.charge.rule, ratio=item.ratio, pool=item.charge.rule.pool)
        for entry in o.true_ups:
            add(o, o.owner, f"true-up ({entry.origin})", entry.currency, entry.amount_pico,
                ratio=Fraction(entry.ratio))
        for entry in o.adjusted:
            add(o, o.owner, f"adjustment of {entry.adjusts_period} {entry.adjusts_kind}",
                entry.currency, entry.amount_pico, entry.events)
    for q in statement.quarantined:
        add(None, q.owner, "quarantined", q.currency, q.cost_pico, q.events)
    if statement.scope.is_company:
        for entry in statement.entries.of("adjustment") if statement.entries else ():
            if not entry.charged and entry.currency:
                add(None, entry.application, f"adjustment of {entry.adjusts_period} "
                    f"{entry.adjusts_kind} (not charged)", entry.currency, entry.amount_pico)
        for charge in statement.shared.charges:
            if not charge.children:
                add(None, charge.rule.pool, f"unallocated pool ({charge.status})",
                    charge.currency, charge.amount_pico, rule=charge.rule,
                    pool=charge.rule.pool)
        for item in statement.shared.uncovered:
            add(None, item.pool, "unallocated pool (no rule)", item.currency, item.amount_pico,
                pool=item.pool)
    return rows


def _owner_total(o: OwnerStatement, currency: str, pico: int) -> str:
    return "unpriced" if not currency and o.unpriced_events else amount(pico)


def sections(statement: Statement) -> list[Section]:
    tie = statement.tie_out()
    kpis = statement.coverage
    owners = statement.owners
    company = statement.scope.is_company
    result = [
        Section("owners", "Spend by owner", [
            {"owner": o.owner, "owner_name": o.name, "business_unit": o.business_unit,
             "cost_center": o.cost_center, "budget_owner": o.budget_owner,
             "currency": currency,
             "direct": amount(o.direct.get(currency, 0)),
             "reallocated": amount(o.reallocated.get(currency, 0)),
             "shared_allocations": amount(sum(r.amount_pico for r in o.received
                                              if r.charge.currency == currency)),
             "true_up": amount(o.true_up.get(currency, 0)),
             "adjustments": amount(o.adjustments.get(currency, 0)),
             "total": _owner_total(o, currency, pico), "events": str(o.events),
             "input_tokens": str(o.input_tokens), "output_tokens": str(o.output_tokens),
             "unpriced_events": str(o.unpriced_events)}
            for o in owners for currency, pico in (sorted(o.total().items()) or [("", 0)])
        ]),
        *(Section(f"by_{dim}", f"Roll-up by {dim.replace('_', ' ')}", [
            {dim: name, "currency": currency, "total": amount(pico),
             "unpriced_events": str(sum(o.unpriced_events for o in owners
                                        if (getattr(o, dim) or "(none)") == name))}
            for name, money in statement.rollup(dim).items()
            for currency, pico in (sorted(money.items()) or [("", 0)])
        ]) for dim in ("business_unit", "cost_center", "budget_owner")),
        Section("usage", "Direct usage by model, environment and workload", [
            {"owner": o.owner, "model": u.model, "environment": u.environment,
             "workload_class": u.workload_class, "currency": currency,
             "amount": "unpriced" if not currency else amount(pico),
             "events": str(u.events), "unpriced_events": str(u.unpriced_events),
             "input_tokens": str(u.input_tokens), "output_tokens": str(u.output_tokens)}
            for o in owners for u in o.usage.values()
            for currency, pico in (sorted(u.cost.items()) or [("", 0)])
        ]),
        Section("shared", "Shared allocations", [
            {"charge": r.charge.id, "rule_id": r.charge.rule.id, "method": r.charge.rule.method,
             "pool": r.charge.rule.pool, "recipient": o.owner, "ratio": ratio_text(r.ratio),
             "currency": r.charge.currency, "amount": amount(r.amount_pico),
             "origin_amount": amount(r.charge.amount_pico)}
            for o in owners for r in o.received
        ], note="Each origin charge is split into children that sum to it exactly."
           if statement.rules_source else "No shared-cost rules: shared-pool cost stays "
                                          "unallocated."),
    ]
    result.append(Section("true_up", "True-up to the bill", [
        {"owner": o.owner, "reconciliation": str(e.reconciliation_id), "method": e.method,
         "ratio": ratio_text(Fraction(e.ratio)), "currency": e.currency,
         "amount": amount(e.amount_pico), "detail": e.detail}
        for o in owners for e in o.true_ups
    ], note="The reconciled variance (bill minus ledger) carried to owners by the true-up "
            "rule (docs/allocation.md)."))
    result.append(Section("adjustments", "Adjustments of closed months", [
        {"owner": o.owner, "adjusts": f"{e.adjusts_period} {e.adjusts_kind}",
         "entry": "" if e.adjusts_entry_id is None else str(e.adjusts_entry_id),
         "currency": e.currency, "amount": amount(e.amount_pico), "detail": e.detail}
        for o in owners for e in o.adjusted
    ]))
    if company:
        result.append(Section("unallocated_pool", "Shared pool cost not allocated", [
            *({"pool": c.rule.pool, "reason": f"{c.status} ({c.rule.id}): {c.detail}",
               "currency": c.currency, "amount": amount(c.amount_pico)}
              for c in statement.shared.charges if not c.children),
            *({"pool": u.pool, "reason": "no rule covers these days",
               "currency": u.currency, "amount": amount(u.amount_pico)}
              for u in statement.shared.uncovered),
        ], note="Pool usage before allocation: " + (", ".join(
            f"{amount(pico)} {currency}" for currency, pico in sorted(statement.pools.items())
            if currency) or "none") + "."))
    result += [
        Section("quarantined", "Quarantined usage (not charged to any owner)", [
            {"captured_owner": q.owner, "currency": q.currency, "events": str(q.events),
             "amount": amount(q.cost_pico)}
            for q in statement.quarantined
        ]),
        Section("unpriced", "Unpriced events by model", [
            {"model": model, "events": str(count),
             "owners": ", ".join(f"{o.owner}: {o.unpriced_by_model[model]}"
                                 for o in owners if model in o.unpriced_by_model)}
            for model, count in statement.unpriced_by_model.items()
        ], note="Unpriced usage has no cost in the ledger; it is counted, not estimated."),
        Section("budgets", "Budget vs actual", [
            {"owner": o.owner, "budget": b.worst.budget.id,
             "scope": b.worst.budget.describe_scope(), "period_kind": b.worst.budget.period,
             "worst_period": b.worst.period.label, "unit": b.worst.budget.unit,
             "limit": _units(b.worst, b.worst.budget.limit_units),
             "actual": _units(b.worst, b.worst.spent), "percent": f"{b.worst.percent}%",
             "level": b.worst.level,
             "current_period": b.current.period.label if b.current else "",
             "current_percent": f"{b.current.percent}%" if b.current else "",
             "periods_at_limit": f"{b.over_limit} of {b.periods}"}
            for o in owners for b in o.budgets
        ], note="Each budget at its worst period within the statement's period."),
    ]
    if company:
        result.append(Section("coverage", "Coverage", [
            *({"currency": c.currency,
               "allocated": percent(c.share("allocated")),
               "shared": percent(c.share("shared")),
               "quarantined": percent(c.share("quarantined")),
               "unallocated": percent(kpis.unallocated_share(c))}
              for c in kpis.currencies),
        ], note="; ".join([f"{kpis.total_events} events, {kpis.unpriced_events} unpriced "
                           f"({percent(kpis.unpriced_share)})", *kpis.alerts()])))
    result += [
        Section("reconciliation", "Reconciliation", [
            {"provider": r.provider, "result": r.result,
             **({"variance": f"{amount(r.variance_pico)} {r.currency}"} if company else {}),
             "variance_percent": "" if r.variance_percent is None else f"{r.variance_percent}%",
             "reviewer": r.reviewer, "date": r.created_at.date().isoformat()}
            for r in statement.reconciliations
        ], note="" if statement.reconciliations else
            f"not reconciled: no reconciliation record for {statement.period.label}"),
        Section("price_sources", "Price sources used", [
            {"id": p.id, "kind": p.kind, "provider": p.provider, "source_url": p.source_url,
             "checked_at": p.checked_at.isoformat(), "checked_by": p.checked_by}
            for p in statement.price_sources
        ]),
        Section("tie_out", "Tie-out", [
            {"currency": currency, **{k: amount(v) for k, v in parts.items()}}
            for currency, parts in tie.items()
        ], note="direct + reallocated + shared allocations + true-up + adjustments + "
                "quarantined + unallocated pool == ledger total + true-up + adjustments "
                "(whole ledger for the period)." if company else
                "direct + reallocated + shared allocations + true-up + adjustments == this "
                "statement's total."),
    ]
    return result


def _units(state: BudgetState, units: int) -> str:
    return amount(units) if state.budget.currency else str(units)


def to_csv(statement: Statement) -> str:
    rows = line_items(statement)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["owner"],
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def to_json(statement: Statement) -> str:
    document = {
        "header": {"scope": str(statement.scope), **header(statement),
                   "status": status(statement)},
        **{s.key: {"title": s.title, "rows": s.rows, "note": s.note}
           for s in sections(statement)},
        "line_items": line_items(statement),
        "not_asserted": list(NOT_ASSERTED),
    }
    return json.dumps(document, indent=2) + "\n"
