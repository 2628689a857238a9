"""A statement as people read it (Markdown, HTML, PDF): registry names instead of ids,
amounts to the currency's minor unit (or ``decimals``), right-aligned, with totals rows.

Displayed amounts are rounded so that every table adds up: owner totals are spread over the
rounded statement total (largest remainder), each owner's direct, reallocated and shared
amounts over its displayed total, and every other table's lines over the displayed figure
they detail (the model breakdown over the displayed direct total, and so on). So one figure
is the same in every table, and each table's lines sum to its totals row. CSV and JSON keep
the exact amounts (``chargeback.to_csv``, ``to_json``).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from fractions import Fraction

from spendtrail.allocation.coverage import percent
from spendtrail.allocation.shared import ratio_text
from spendtrail.reports.chargeback import (
    NOT_ASSERTED,
    OwnerStatement,
    Statement,
    UsageLine,
    header,
)
from spendtrail.reports.rounding import amount_text, minor_unit, spread, to_units, units_text

UNPRICED = "unpriced"
_DIMENSION_TITLES = {
    "business_unit": "business unit",
    "cost_center": "cost center",
    "budget_owner": "budget owner",
}
_NAME_OF = {
    "business_unit": "business_unit_name",
    "cost_center": "cost_center_name",
    "budget_owner": "budget_owner_name",
    "application": "name",
}


@dataclass(frozen=True, slots=True)
class Column:
    title: str
    numeric: bool = False  # right-aligned
    wrap: bool = False  # long text (URLs, ids) that may break over lines


@dataclass
class Table:
    key: str
    title: str
    columns: list[Column]
    rows: list[list[str]] = field(default_factory=list)
    totals: list[str] | None = None  # the totals row, if the table has one
    note: str = ""
    group: str = ""  # adjacent tables of one group may sit side by side


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    pico: int  # the exact amount, for the bar's length
    text: str


@dataclass(frozen=True, slots=True)
class Chart:
    title: str
    bars: list[Bar]


@dataclass
class View:
    title: str
    preliminary: bool
    header: list[tuple[str, str]]
    summary: list[tuple[str, str]]
    charts: list[Chart]
    tables: list[Table]
    not_asserted: tuple[str, ...] = NOT_ASSERTED


def _owners_of_currency(statement: Statement, currency: str) -> list[OwnerStatement]:
    """Owners with an amount in ``currency``, and owners with no priced usage at all (they
    show as unpriced in every currency, never vanish)."""
    return [o for o in statement.owners if currency in o.total() or not any(c for c in o.total())]


def _percent(ratio: Fraction) -> str:
    return f"{ratio_text(ratio * 100, 2)}%"


class _Currency:
    """The displayed figures of one currency, computed once and reused by every table."""

    def __init__(self, statement: Statement, currency: str, decimals: int) -> None:
        self.currency, self.decimals = currency, decimals
        self.owners = _owners_of_currency(statement, currency)
        exact = [o.total().get(currency, 0) for o in self.owners]
        self.total_units = to_units(sum(exact), decimals)
        totals = spread(exact, decimals)
        # Per owner: direct, reallocated, shared, true-up, adjustments, total.
        self.owner_units: dict[str, tuple[int, ...]] = {}
        for o, total in zip(self.owners, totals, strict=True):
            shared = sum(r.amount_pico for r in o.received if r.charge.currency == currency)
            parts = spread(
                [o.direct.get(currency, 0), o.reallocated.get(currency, 0), shared,
                 o.true_up.get(currency, 0), o.adjustments.get(currency, 0)], decimals, total
            )
            self.owner_units[o.owner] = (*parts, total)
        # Calls priced in this currency, and unpriced calls (shown in every currency's tables).
        self.calls = {
            o.owner: sum(u.events for u in o.usage.values() if self.counts(u)) for o in self.owners
        }
        self.unpriced = {
            o.owner: sum(u.unpriced_events for u in o.usage.values() if self.counts(u))
            for o in self.owners
        }
        self.direct, self.reallocated, self.shared, self.true_up, self.adjustments = (
            sum(units[i] for units in self.owner_units.values()) for i in range(5)
        )

    def counts(self, line: UsageLine) -> bool:
        return not self.currency or self.currency in line.cost or not any(line.cost)

    def text(self, units: int) -> str:
        return units_text(units, self.decimals) if self.currency else UNPRICED

    def lone(self, pico: int) -> str:
        return amount_text(pico, self.decimals)

    def priced(self, o: OwnerStatement) -> bool:
        return bool(self.currency) and self.currency in o.total()


def build_view(statement: Statement, decimals: int | None = None) -> View:
    """The statement's tables as people read them; ``decimals`` overrides the currency's
    minor unit (2 for USD)."""
    currencies = statement.currencies() or [""]
    scope = statement.scope
    title = "Chargeback statement"
    if not scope.is_company:
        title += f": {statement.scope_name}"
    amounts_note = (
        ", ".join(
            f"{c} to {decimals if decimals is not None else minor_unit(c)} decimals"
            for c in currencies
            if c
        )
        or "none priced"
    )
    info = header(statement)
    head = [
        ("Statement for", info["statement_for"]),
        ("Period", info["period"]),
        ("Status", info["status"]),
        ("Generated", info["generated_at"]),
        ("Shared-cost rules", info["shared_cost_rules"]),
        (
            "Amounts",
            f"{amounts_note}; lines are rounded so that they add up to the "
            "totals shown; the CSV and JSON formats keep exact amounts",
        ),
    ]
    summary: list[tuple[str, str]] = []
    tables: list[Table] = []
    charts: list[Chart] = []
    for currency in currencies:
        figures = _Currency(
            statement, currency, decimals if decimals is not None else minor_unit(currency)
        )
        suffix = f" ({currency})" if len(currencies) > 1 else ""
        summary += _summary(statement, figures)
        tables += _currency_tables(statement, figures, suffix)
        charts += _charts(statement, figures)
    tables += _other_tables(statement, currencies, decimals)
    return View(title, not statement.closed, head, summary, charts, tables)


def _summary(statement: Statement, f: _Currency) -> list[tuple[str, str]]:
    unpriced = sum(f.unpriced.values())
    calls = sum(f.calls.values())
    label = f"Total charged ({f.currency})" if f.currency else "Total charged"
    rows = [
        (label, f.text(f.total_units)),
        ("Calls", f"{calls:,}"),
        ("Unpriced calls (no cost known)", f"{unpriced:,}"),
    ]
    if statement.scope.is_company and f.currency:
        ledger = to_units(statement.ledger_total.get(f.currency, 0), f.decimals)
        rows.append((f"Ledger total ({f.currency})", f.text(ledger)))
        billed = [r for r in statement.reconciliations
                  if r.currency == f.currency and r.result == "pass"]
        if billed:
            rows.append((f"Billed, reconciled ({f.currency})",
                         f.text(to_units(sum(r.billed_pico for r in billed), f.decimals))))
    return rows


def _currency_tables(statement: Statement, f: _Currency, suffix: str) -> list[Table]:
    cur = f" {f.currency}" if f.currency else ""
    owners = Table(
        "owners",
        f"Charges by application{suffix}",
        [
            Column("Application"),
            Column("Business unit"),
            Column("Cost center"),
            Column("Budget owner"),
            Column(f"Direct{cur}", True),
            Column(f"Reallocated{cur}", True),
            Column(f"Shared{cur}", True),
            Column(f"True-up{cur}", True),
            Column(f"Adjustments{cur}", True),
            Column(f"Total{cur}", True),
            Column("Calls", True),
            Column("Unpriced calls", True),
        ],
    )
    for o in f.owners:
        units = f.owner_units[o.owner]
        shown = [f.text(u) for u in units] if f.priced(o) else [UNPRICED] * 6
        owners.rows.append(
            [
                o.name,
                o.business_unit_name,
                o.cost_center_name,
                o.budget_owner_name,
                *shown,
                f"{f.calls[o.owner]:,}",
                f"{f.unpriced[o.owner]:,}",
            ]
        )
    owners.totals = [
        "Total",
        "",
        "",
        "",
        f.text(f.direct),
        f.text(f.reallocated),
        f.text(f.shared),
        f.text(f.true_up),
        f.text(f.adjustments),
        f.text(f.total_units),
        f"{sum(f.calls.values()):,}",
        f"{sum(f.unpriced.values()):,}",
    ]
    owners.note = (
        "Direct: the application's own calls. Reallocated: usage moved to it from "
        "the exception queue. Shared: its share of the shared pool, by the rules. "
        "True-up: its share of the reconciled bill's variance (bill minus ledger). "
        "Adjustments: what changed in closed months since they were closed."
    )
    tables = [owners]
    scope = statement.scope
    if scope.attribute != "application" and len(f.owners) > 1:
        for dim, title in _DIMENSION_TITLES.items():
            if dim != scope.attribute:
                tables.append(_rollup(f, dim, title, suffix))
    for dim, title in (
        ("model", "Model"),
        ("environment", "Environment"),
        ("workload_class", "Workload"),
    ):
        tables.append(_breakdown(f, dim, title, suffix))
    tables.append(_shared(statement, f, suffix))
    tables += _quarantine_and_tie_out(statement, f, suffix)
    return tables


def _rollup(f: _Currency, dim: str, title: str, suffix: str) -> Table:
    groups: dict[str, list[OwnerStatement]] = defaultdict(list)
    for o in f.owners:
        groups[getattr(o, _NAME_OF[dim]) or "(none)"].append(o)
    table = Table(
        f"by_{dim}",
        f"Roll-up by {title}{suffix}",
        [
            Column(title.capitalize()),
            Column("Applications", True),
            Column(f"Total {f.currency}".strip(), True),
            Column("Unpriced calls", True),
        ],
        group="rollups",
    )
    for name, members in sorted(groups.items()):
        priced = [o for o in members if f.priced(o)]
        units = sum(f.owner_units[o.owner][-1] for o in priced)
        table.rows.append(
            [
                name,
                str(len(members)),
                f.text(units) if priced else UNPRICED,
                f"{sum(f.unpriced[o.owner] for o in members):,}",
            ]
        )
    table.totals = [
        "Total",
        str(len(f.owners)),
        f.text(f.total_units),
        f"{sum(f.unpriced.values()):,}",
    ]
    return table


def _breakdown(f: _Currency, dim: str, title: str, suffix: str) -> Table:
    """The scope's own usage by one dimension, plus its reallocated, shared, true-up and
    adjustment lines, adding up to the scope's total."""
    index = {"model": 0, "environment": 1, "workload_class": 2}[dim]
    groups: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])  # pico, calls, ...
    for o in f.owners:
        for key, line in o.usage.items():
            if not f.counts(line):
                continue  # priced in another currency only
            group = groups[key[index] or "(none)"]
            group[0] += line.cost.get(f.currency, 0)
            group[1] += line.events
            group[2] += line.input_tokens
            group[3] += line.output_tokens
            group[4] += line.unpriced_events
    names = sorted(groups)
    units = spread([groups[n][0] for n in names], f.decimals, f.direct)
    table = Table(
        f"by_{dim}",
        f"By {title.lower()}{suffix}",
        [
            Column(title),
            Column("Calls", True),
            Column("Input tokens", True),
            Column("Output tokens", True),
            Column(f"Amount {f.currency}".strip(), True),
            Column("Unpriced calls", True),
        ],
        group="breakdowns",
    )
    for name, shown in zip(names, units, strict=True):
        pico, calls, tokens_in, tokens_out, unpriced = groups[name]
        all_unpriced = unpriced == calls and pico == 0
        table.rows.append(
            [
                name,
                f"{calls:,}",
                f"{tokens_in:,}",
                f"{tokens_out:,}",
                UNPRICED if all_unpriced else f.text(shown),
                f"{unpriced:,}",
            ]
        )
    if f.reallocated:
        table.rows.append(
            ["Reallocated from the exception queue", "", "", "", f.text(f.reallocated), ""]
        )
    if f.shared:
        table.rows.append(["Shared costs received", "", "", "", f.text(f.shared), ""])
    if f.true_up:
        table.rows.append(["True-up to the bill", "", "", "", f.text(f.true_up), ""])
    if f.adjustments:
        table.rows.append(["Adjustments of closed months", "", "", "", f.text(f.adjustments), ""])
    table.totals = [
        "Total",
        f"{sum(g[1] for g in groups.values()):,}",
        f"{sum(g[2] for g in groups.values()):,}",
        f"{sum(g[3] for g in groups.values()):,}",
        f.text(f.total_units),
        f"{sum(g[4] for g in groups.values()):,}",
    ]
    return table


def _shared(statement: Statement, f: _Currency, suffix: str) -> Table:
    received = [(o, r) for o in f.owners for r in o.received if r.charge.currency == f.currency]
    units = spread([r.amount_pico for _, r in received], f.decimals, f.shared)
    table = Table(
        "shared",
        f"Shared costs received{suffix}",
        [
            Column("Application"),
            Column("Pool"),
            Column("Rule"),
            Column("Method"),
            Column("Days"),
            Column("Ratio", True),
            Column(f"Pool charge {f.currency}".strip(), True),
            Column(f"Share {f.currency}".strip(), True),
        ],
    )
    for (o, r), shown in zip(received, units, strict=True):
        last = r.charge.end.fromordinal(r.charge.end.toordinal() - 1)
        table.rows.append(
            [
                o.name,
                statement.pool_name or r.charge.rule.pool,
                r.charge.rule.id,
                r.charge.rule.method,
                f"{r.charge.start:%m-%d} to {last:%m-%d}",
                _percent(r.ratio),
                f.lone(r.charge.amount_pico),
                f.text(shown),
            ]
        )
    if received:
        table.totals = ["Total", "", "", "", "", "", "", f.text(f.shared)]
    table.note = (
        "Each pool charge is split into shares that sum to it exactly."
        if statement.rules_source
        else "No shared-cost rules: shared-pool cost stays unallocated."
    )
    return table


def _quarantine_and_tie_out(statement: Statement, f: _Currency, suffix: str) -> list[Table]:
    quarantined = [q for q in statement.quarantined if q.currency == f.currency]
    q_exact = sum(q.cost_pico for q in quarantined)
    tie = Table(
        "tie_out",
        f"Tie-out{suffix}",
        [Column("Part"), Column(f"Amount {f.currency}".strip(), True)],
    )
    tie.rows = [
        ["Direct", f.text(f.direct)],
        ["Reallocated", f.text(f.reallocated)],
        ["Shared costs received", f.text(f.shared)],
        ["True-up to the bill", f.text(f.true_up)],
        ["Adjustments of closed months", f.text(f.adjustments)],
    ]
    tables = []
    if statement.scope.is_company:
        pool = [
            (c.rule.pool, f"{c.status} ({c.rule.id})", c.amount_pico)
            for c in statement.shared.charges
            if not c.children and c.currency == f.currency
        ]
        pool += [
            (u.pool, "no rule covers these days", u.amount_pico)
            for u in statement.shared.uncovered
            if u.currency == f.currency
        ]
        exact = statement.tie_out().get(f.currency, {})
        grand = to_units(exact.get("ledger_total", 0), f.decimals)
        q_units, pool_units, adjusted_units = spread(
            [q_exact, sum(p[2] for p in pool), exact.get("adjustments_not_charged", 0)],
            f.decimals, grand - f.total_units
        )
        tie.rows += [
            ["Quarantined (not charged)", f.text(q_units)],
            ["Shared pool not allocated", f.text(pool_units)],
        ]
        if adjusted_units:
            tie.rows.append(["Adjustments charged to no owner", f.text(adjusted_units)])
        tie.totals = ["Ledger total, with true-up and adjustments", f.text(grand)]
        tie.note = (
            "What the owners are charged, plus what is charged to no one, equals the "
            "ledger's total for the period plus the true-up to the bill and the adjustments "
            "of closed months."
        )
        unallocated = Table(
            "unallocated_pool",
            f"Shared pool cost not allocated{suffix}",
            [Column("Pool"), Column("Why"), Column(f"Amount {f.currency}".strip(), True)],
        )
        shown = spread([p[2] for p in pool], f.decimals, pool_units)
        unallocated.rows = [
            [statement.pool_name or name, why, f.text(units)]
            for (name, why, _), units in zip(pool, shown, strict=True)
        ]
        unallocated.totals = ["Total", "", f.text(pool_units)]
        tables.append(unallocated)
    else:
        q_units = to_units(q_exact, f.decimals)
        tie.totals = ["Statement total", f.text(f.total_units)]
        tie.note = "This statement's lines add up to its total; no other owner is included."
    table = Table(
        "quarantined",
        f"Quarantined usage (not charged to any owner){suffix}",
        [
            Column("Captured application"),
            Column("Calls", True),
            Column(f"Amount {f.currency}".strip(), True),
        ],
    )
    shown = spread([q.cost_pico for q in quarantined], f.decimals, q_units)
    table.rows = [
        [statement.application_names.get(q.owner, q.owner), f"{q.events:,}", f.text(units)]
        for q, units in zip(quarantined, shown, strict=True)
    ]
    if quarantined:
        table.totals = ["Total", f"{sum(q.events for q in quarantined):,}", f.text(q_units)]
    table.note = (
        "Calls the registry could not attribute as captured; they are in no owner's "
        "total until the exception queue assigns them."
    )
    return [*tables, table, tie]


def _charts(statement: Statement, f: _Currency) -> list[Chart]:
    if not f.currency:
        return []
    by_owner = [
        Bar(o.name, o.total()[f.currency], f.text(f.owner_units[o.owner][-1]))
        for o in f.owners
        if f.priced(o)
    ]
    days = [(day, money.get(f.currency, 0)) for day, money in statement.by_day]
    if statement.scope.is_company:
        target = to_units(statement.ledger_total.get(f.currency, 0), f.decimals)
        day_title = f"Ledger spend by day ({f.currency})"
    else:
        target, day_title = f.direct, f"Direct spend by day ({f.currency})"
    units = spread([pico for _, pico in days], f.decimals, target)
    by_day = [
        Bar(day[5:], pico, f.text(shown)) for (day, pico), shown in zip(days, units, strict=True)
    ]
    return [Chart(f"Charges by application ({f.currency})", by_owner), Chart(day_title, by_day)]


def _other_tables(statement: Statement, currencies: list[str], decimals: int | None) -> list[Table]:
    """Tables that are not sums of one currency: unpriced calls, budgets, reconciliation,
    coverage, price sources."""
    unpriced = Table(
        "unpriced",
        "Unpriced calls by model",
        [Column("Model"), Column("Calls", True), Column("Applications")],
    )
    unpriced.rows = [
        [
            model,
            f"{count:,}",
            ", ".join(
                f"{o.name}: {o.unpriced_by_model[model]:,}"
                for o in statement.owners
                if model in o.unpriced_by_model
            ),
        ]
        for model, count in statement.unpriced_by_model.items()
    ]
    unpriced.note = "Unpriced usage has no cost in the ledger; it is counted, not estimated."

    budgets = Table(
        "budgets",
        "Budgets",
        [
            Column("Budget"),
            Column("For"),
            Column("Period"),
            Column("Worst period"),
            Column("Limit", True),
            Column("Actual", True),
            Column("Used", True),
            Column("Level"),
            Column("Now", True),
            Column("Periods at limit", True),
        ],
    )
    seen = set()
    for o in statement.owners:
        for line in o.budgets:
            budget = line.worst.budget
            if budget.id in seen:
                continue
            seen.add(budget.id)
            scope_name = getattr(o, _NAME_OF[budget.scope])
            places = decimals if decimals is not None else minor_unit(budget.currency or "")

            def shown(units: int, currency: str | None = budget.currency, d: int = places) -> str:
                return f"{amount_text(units, d)} {currency}" if currency else f"{units:,} tokens"

            budgets.rows.append(
                [
                    budget.id,
                    f"{scope_name} ({_DIMENSION_TITLES.get(budget.scope, budget.scope)})"
                    + (f", {budget.environment}" if budget.environment else ""),
                    budget.period,
                    line.worst.period.label,
                    shown(budget.limit_units),
                    shown(line.worst.spent),
                    f"{line.worst.percent}%",
                    line.worst.level,
                    f"{line.current.percent}%" if line.current else "",
                    f"{line.over_limit} of {line.periods}",
                ]
            )
    budgets.note = (
        "Each budget at its worst period within the statement's period (a daily "
        "budget shows its worst day); Now: the period running today."
    )

    company = statement.scope.is_company
    reconciliation = Table(
        "reconciliation",
        "Reconciliation against the provider's bill",
        [
            Column("Provider"),
            Column("Result"),
            Column("Variance", True),
            Column("Reviewer"),
            Column("Date"),
        ],
    )
    for r in statement.reconciliations:
        variance = "" if r.variance_percent is None else f"{r.variance_percent}%"
        if company:
            d = decimals if decimals is not None else minor_unit(r.currency)
            variance = f"{amount_text(r.variance_pico, max(d, 6))} {r.currency} ({variance})"
        reconciliation.rows.append(
            [r.provider, r.result, variance, r.reviewer, r.created_at.date().isoformat()]
        )
    if not statement.reconciliations:
        reconciliation.note = (
            f"Not reconciled: no reconciliation record for {statement.period.label}."
        )
    tables = [unpriced, budgets, reconciliation]
    if company:
        kpis = statement.coverage
        cover = Table(
            "coverage",
            "Allocation coverage",
            [
                Column("Currency"),
                Column("Allocated", True),
                Column("Shared", True),
                Column("Quarantined", True),
                Column("Unallocated", True),
            ],
        )
        cover.rows = [
            [
                c.currency,
                *(percent(c.share(s)) for s in ("allocated", "shared", "quarantined")),
                percent(kpis.unallocated_share(c)),
            ]
            for c in kpis.currencies
        ]
        cover.note = "; ".join(
            [f"{kpis.total_events:,} calls, {kpis.unpriced_events:,} unpriced", *kpis.alerts()]
        )
        tables.append(cover)
    sources = Table(
        "price_sources",
        "Price sources used",
        [
            Column("Price entry", wrap=True),
            Column("Kind"),
            Column("Source", wrap=True),
            Column("Checked"),
            Column("Checked by"),
        ],
    )
    sources.rows = [
        [p.id, p.kind, p.source_url, p.checked_at.isoformat(), p.checked_by]
        for p in statement.price_sources
    ]
    tables.append(sources)
    return tables


def to_markdown(statement: Statement, decimals: int | None = None) -> str:
    view = build_view(statement, decimals)
    out = [f"# {view.title}", ""]
    if view.preliminary:
        out += ["**PRELIMINARY**: the period is not closed; figures may still change.", ""]
    out += [f"- **{label}**: {value}" for label, value in view.header]
    out += ["", "| Summary | |", "|---|---:|"]
    out += [f"| {label} | {value} |" for label, value in view.summary]
    for table in view.tables:
        out += ["", f"## {table.title}", ""]
        if table.rows:
            out.append("| " + " | ".join(c.title for c in table.columns) + " |")
            out.append("|" + "".join("---:|" if c.numeric else "---|" for c in table.columns))
            out += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in table.rows]
            if table.totals is not None:
                out.append(
                    "| " + " | ".join(f"**{_cell(v)}**" if v else "" for v in table.totals) + " |"
                )
        else:
            out.append("_none_")
        if table.note:
            out += ["", table.note]
    out += ["", "## What this statement does not assert", ""]
    out += [f"- {text}" for text in view.not_asserted]
    return "\n".join(out) + "\n"


def _cell(value: str) -> str:
    return value.replace("|", "\\|")
