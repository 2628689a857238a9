"""Showback/chargeback statement per owner and period, built from the daily rollups.

Every amount is integer pico-units per currency, so the statement ties out exactly:
owners' direct cost + shared allocations + quarantined + unallocated pool == ledger total.
``sections`` turns a statement into titled tables of exact decimal strings, the one shape
the Markdown, CSV, JSON and HTML renderings share.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from fractions import Fraction

import sqlalchemy as sa

from spendtrail.allocation.coverage import Coverage, OwnerLine, coverage, percent
from spendtrail.allocation.rules import Rule
from spendtrail.allocation.shared import OriginCharge, SharedAllocation, apply_rules, ratio_text
from spendtrail.budgets import BudgetState, ledger_spend, list_budgets
from spendtrail.ledger.registry_versions import load_history
from spendtrail.ledger.schema import (
    price_entries,
    prices_used_daily,
    reconciliations,
)
from spendtrail.money import from_pico, plain_decimal
from spendtrail.periods import Period
from spendtrail.reconcile import Reconciliation, load_reconciliation
from spendtrail.registry import Registry
from spendtrail.reports.costs import cost_report

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


@dataclass(frozen=True, slots=True)
class Received:
    """An owner's share of one shared-pool charge."""

    charge: OriginCharge
    amount_pico: int
    ratio: Fraction


@dataclass
class OwnerStatement:
    owner: str  # the application (or a shared pool charged centrally)
    business_unit: str = ""
    cost_center: str = ""
    budget_owner: str = ""
    events: int = 0
    unpriced_events: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    direct: Money = field(default_factory=lambda: defaultdict(int))
    reallocated: Money = field(default_factory=lambda: defaultdict(int))  # exception queue
    received: list[Received] = field(default_factory=list)
    unpriced_by_model: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    budgets: list[BudgetState] = field(default_factory=list)

    @property
    def application(self) -> str:  # so a budget's scope names an attribute of every owner
        return self.owner

    def total(self) -> Money:
        result: Money = defaultdict(int)
        for amounts in (self.direct, self.reallocated):
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
    ledger: str
    rules_file: str | None
    owners: list[OwnerStatement]
    pools: Money  # shared-pool usage before its split
    shared: SharedAllocation
    quarantined: list[OwnerLine]
    unpriced_by_model: dict[str, int]
    coverage: Coverage
    reconciliations: list[Reconciliation]
    price_sources: list[PriceSource]
    by_day: list[tuple[str, Money]]
    ledger_total: Money

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
        """Per currency, each part of the ledger total; ``difference`` is 0 when it ties."""
        parts: dict[str, Money] = {
            "direct": _sum(o.direct for o in self.owners),
            "reallocated": _sum(o.reallocated for o in self.owners),
            "shared_allocations": _sum(
                {c.charge.currency: c.amount_pico} for o in self.owners for c in o.received),
            "quarantined": _sum({q.currency: q.cost_pico} for q in self.quarantined),
            "unallocated_pool": self.unallocated_pool(),
        }
        result = {}
        for currency in sorted(set(self.ledger_total) | {c for p in parts.values() for c in p}):
            if not currency:
                continue
            row = {name: amounts.get(currency, 0) for name, amounts in parts.items()}
            row["ledger_total"] = self.ledger_total.get(currency, 0)
            row["difference"] = row["ledger_total"] - sum(
                v for k, v in row.items() if k != "ledger_total")
            result[currency] = row
        return result

    def rollup(self, dimension: str) -> dict[str, Money]:
        """Owner totals summed by business_unit or cost_center."""
        result: dict[str, Money] = defaultdict(lambda: defaultdict(int))
        for owner in self.owners:
            for currency, pico in owner.total().items():
                result[getattr(owner, dimension) or "(none)"][currency] += pico
        return dict(sorted(result.items()))


def build_statement(
    conn: sa.Connection,
    period: Period,
    *,
    ledger: str,
    rules: list[Rule] | None = None,
    rules_file: str | None = None,
    owner: str | None = None,
    generated_at: datetime | None = None,
) -> Statement:
    """The statement for ``period``; ``owner`` keeps one application's statement, while the
    pool, quarantine, coverage and tie-out sections still cover the whole ledger."""
    found = load_history(conn).at(datetime.combine(period.end, time(), UTC))
    registry = found[1] if found else None
    shared = apply_rules(conn, rules or [], period)
    pools = {r.pool for r in rules or ()} | {u.pool for u in shared.uncovered}
    dims = ("application", "allocation_status", "model",
            "business_unit", "cost_center", "budget_owner")
    report = cost_report(conn, period, dims)
    pools |= {row.key["application"] for row in report.rows
              if row.key["allocation_status"] == "shared"}

    owners: dict[str, OwnerStatement] = {}

    def statement_of(name: str) -> OwnerStatement:
        if name not in owners:
            owners[name] = _owner(name, registry)
        return owners[name]

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
        target = statement_of(key["application"])
        target.events += row.events
        target.unpriced_events += row.unpriced_events
        target.input_tokens += row.input_tokens
        target.output_tokens += row.output_tokens
        if row.unpriced_events:
            target.unpriced_by_model[key["model"]] += row.unpriced_events
        for currency, pico in row.cost_pico.items():
            if currency:
                target.direct[currency] += pico

    kpis = coverage(conn, period)
    for line in kpis.lines:
        if line.status == "reallocated" and line.currency:
            statement_of(line.owner).reallocated[line.currency] += line.cost_pico
    for charge in shared.charges:
        for child in charge.children:
            statement_of(child.recipient).received.append(
                Received(charge, child.amount_pico, child.ratio))

    selected = [owners[name] for name in sorted(owners) if owner in (None, name)]
    _attach_budgets(conn, selected, period)
    days = cost_report(conn, period, ("day",))
    return Statement(
        period=period,
        generated_at=generated_at or datetime.now(UTC),
        ledger=ledger,
        rules_file=rules_file,
        owners=selected,
        pools=dict(pool_cost),
        shared=shared,
        quarantined=[q for q in kpis.lines if q.status == "quarantined"],
        unpriced_by_model=dict(sorted(unpriced.items())),
        coverage=kpis,
        reconciliations=_reconciliations(conn, period),
        price_sources=_price_sources(conn, period),
        by_day=[(row.key["day"], dict(row.cost_pico)) for row in days.rows],
        ledger_total={c: pico for c, pico in report.totals.cost_pico.items() if c},
    )


def _owner(name: str, registry: Registry | None) -> OwnerStatement:
    known = None
    if registry is not None:
        known = registry.applications.get(name) or (
            registry.shared_pool if registry.shared_pool.id == name else None)
    if known is None:
        return OwnerStatement(name)
    return OwnerStatement(name, known.business_unit, known.cost_center, known.budget_owner)


def _attach_budgets(conn: sa.Connection, owners: list[OwnerStatement], period: Period) -> None:
    """Budgets whose scope covers the owner, in their period containing the statement's
    first day, with the spend the ledger holds for that budget period."""
    at = datetime.combine(period.start, time(), UTC)
    spent: dict[str, BudgetState] = {}
    for budget in list_budgets(conn):
        budget_period = budget.period_at(at)
        if budget_period is None:
            continue
        for owner in owners:
            if getattr(owner, budget.scope) != budget.scope_value:
                continue
            if budget.id not in spent:
                spent[budget.id] = BudgetState(
                    budget, budget_period, ledger_spend(conn, budget, budget_period))
            owner.budgets.append(spent[budget.id])


def _reconciliations(conn: sa.Connection, period: Period) -> list[Reconciliation]:
    """The latest record per provider for exactly this period."""
    r = reconciliations.c
    latest = (sa.select(sa.func.max(r.id))
              .where(r.period_start == period.start, r.period_end == period.end)
              .group_by(r.provider))
    records = (load_reconciliation(conn, record_id)
               for record_id in sorted(conn.execute(latest).scalars()))
    return [record for record in records if record is not None]


def _price_sources(conn: sa.Connection, period: Period) -> list[PriceSource]:
    """The price entries the period's usage was priced with: read from prices_used_daily,
    kept at ingest and repricing, so this is O(days x models), not O(events)."""
    u, p = prices_used_daily.c, price_entries.c
    used = (sa.select(u.price_entry_id).distinct()
            .where(u.day >= period.start, u.day < period.end))
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


# --- Sections: the tables every format renders ---------------------------------------------


@dataclass(frozen=True, slots=True)
class Section:
    key: str
    title: str
    rows: list[dict[str, str]]
    note: str = ""


def amount(pico: int) -> str:
    """Exact decimal string of pico-units, never in exponent form (1000, not 1E+3)."""
    return plain_decimal(from_pico(pico))


def header(statement: Statement) -> dict[str, str]:
    return {
        "period": f"{statement.period.label} ({statement.period.start} to "
                  f"{date.fromordinal(statement.period.end.toordinal() - 1)})",
        "generated_at": statement.generated_at.isoformat(timespec="seconds"),
        "ledger": statement.ledger,
        "shared_cost_rules": statement.rules_file or "none (pool cost left unallocated)",
    }


def line_items(statement: Statement) -> list[dict[str, str]]:
    """One row per owner line item; the amounts of every row add up to the ledger total."""
    rows = []

    def add(owner: OwnerStatement | None, name: str, line: str, currency: str, pico: int,
            events: int | str = "", rule: Rule | None = None, ratio: Fraction | None = None,
            pool: str = "") -> None:
        rows.append({
            "owner": name,
            "business_unit": owner.business_unit if owner else "",
            "cost_center": owner.cost_center if owner else "",
            "line": line,
            "pool": pool,
            "rule_id": rule.id if rule else "",
            "method": rule.method if rule else "",
            "ratio": ratio_text(ratio) if ratio is not None else "",
            "currency": currency,
            "amount": amount(pico),
            "events": str(events),
        })

    for o in statement.owners:
        currencies = sorted(o.direct) or [""]
        for currency in currencies:
            add(o, o.owner, "direct", currency, o.direct.get(currency, 0), o.events)
        for currency, pico in sorted(o.reallocated.items()):
            add(o, o.owner, "reallocated from quarantine", currency, pico)
        for item in o.received:
            add(o, o.owner, "shared allocation", item.charge.currency, item.amount_pico,
                rule=item.charge.rule, ratio=item.ratio, pool=item.charge.rule.pool)
    for q in statement.quarantined:
        add(None, q.owner, "quarantined", q.currency, q.cost_pico, q.events)
    for charge in statement.shared.charges:
        if not charge.children:
            add(None, charge.rule.pool, f"unallocated pool ({charge.status})", charge.currency,
                charge.amount_pico, rule=charge.rule, pool=charge.rule.pool)
    for item in statement.shared.uncovered:
        add(None, item.pool, "unallocated pool (no rule)", item.currency, item.amount_pico,
            pool=item.pool)
    return rows


def sections(statement: Statement) -> list[Section]:
    tie = statement.tie_out()
    kpis = statement.coverage
    owners = statement.owners
    return [
        Section("owners", "Spend by owner", [
            {"owner": o.owner, "business_unit": o.business_unit, "cost_center": o.cost_center,
             "budget_owner": o.budget_owner, "currency": currency,
             "direct": amount(o.direct.get(currency, 0)),
             "reallocated": amount(o.reallocated.get(currency, 0)),
             "shared_allocations": amount(sum(r.amount_pico for r in o.received
                                              if r.charge.currency == currency)),
             "total": amount(pico), "events": str(o.events),
             "input_tokens": str(o.input_tokens), "output_tokens": str(o.output_tokens),
             "unpriced_events": str(o.unpriced_events)}
            for o in owners for currency, pico in (sorted(o.total().items()) or [("", 0)])
        ]),
        *(Section(f"by_{dim}", f"Roll-up by {dim.replace('_', ' ')}", [
            {dim: name, "currency": currency, "total": amount(pico)}
            for name, money in statement.rollup(dim).items()
            for currency, pico in sorted(money.items())
        ]) for dim in ("business_unit", "cost_center")),
        Section("shared", "Shared allocations", [
            {"charge": r.charge.id, "rule_id": r.charge.rule.id, "method": r.charge.rule.method,
             "pool": r.charge.rule.pool, "recipient": o.owner, "ratio": ratio_text(r.ratio),
             "currency": r.charge.currency, "amount": amount(r.amount_pico),
             "origin_amount": amount(r.charge.amount_pico)}
            for o in owners for r in o.received
        ], note="Each origin charge is split into children that sum to it exactly."
           if statement.rules_file else "No --rules given: shared-pool cost stays unallocated."),
        Section("unallocated_pool", "Shared pool cost not allocated", [
            *({"pool": c.rule.pool, "reason": f"{c.status} ({c.rule.id}): {c.detail}",
               "currency": c.currency, "amount": amount(c.amount_pico)}
              for c in statement.shared.charges if not c.children),
            *({"pool": u.pool, "reason": "no rule covers these days",
               "currency": u.currency, "amount": amount(u.amount_pico)}
              for u in statement.shared.uncovered),
        ], note="Pool usage before allocation: " + (", ".join(
            f"{amount(pico)} {currency}" for currency, pico in sorted(statement.pools.items())
            if currency) or "none") + "."),
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
            {"owner": o.owner, "budget": s.budget.id, "scope": s.budget.describe_scope(),
             "budget_period": s.period.label, "unit": s.budget.unit,
             "limit": _units(s, s.budget.limit_units), "actual": _units(s, s.spent),
             "percent": f"{s.percent}%", "level": s.level}
            for o in owners for s in o.budgets
        ]),
        Section("coverage", "Coverage", [
            *({"currency": c.currency,
               "allocated": percent(c.share("allocated")),
               "shared": percent(c.share("shared")),
               "quarantined": percent(c.share("quarantined")),
               "unallocated": percent(kpis.unallocated_share(c))}
              for c in kpis.currencies),
        ], note="; ".join([f"{kpis.total_events} events, {kpis.unpriced_events} unpriced "
                           f"({percent(kpis.unpriced_share)})", *kpis.alerts()])),
        Section("reconciliation", "Reconciliation", [
            {"id": str(r.id), "provider": r.provider, "result": r.result,
             "variance": f"{amount(r.variance_pico)} {r.currency}",
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
        ], note="direct + reallocated + shared allocations + quarantined + unallocated pool "
                "== ledger total (whole ledger for the period)."),
    ]


def _units(state: BudgetState, units: int) -> str:
    return amount(units) if state.budget.currency else str(units)


def to_markdown(statement: Statement) -> str:
    out = [f"# Chargeback statement: {statement.period.label}", ""]
    out += [f"- **{k.replace('_', ' ')}**: {v}" for k, v in header(statement).items()]
    for section in sections(statement):
        out += ["", f"## {section.title}", ""]
        if section.rows:
            names = list(section.rows[0])
            out.append("| " + " | ".join(n.replace("_", " ") for n in names) + " |")
            out.append("|" + "---|" * len(names))
            out += ["| " + " | ".join(_cell(row[n]) for n in names) + " |"
                    for row in section.rows]
        else:
            out.append("_none_")
        if section.note:
            out += ["", section.note]
    out += ["", "## What this statement does not assert", ""]
    out += [f"- {text}" for text in NOT_ASSERTED]
    return "\n".join(out) + "\n"


def _cell(value: str) -> str:
    return value.replace("|", "\\|")


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
        "header": header(statement),
        **{s.key: {"title": s.title, "rows": s.rows, "note": s.note}
           for s in sections(statement)},
        "line_items": line_items(statement),
        "not_asserted": list(NOT_ASSERTED),
    }
    return json.dumps(document, indent=2) + "\n"
