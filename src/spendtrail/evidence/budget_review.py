"""Budget reviews: one ledger row per budget for an accounting period, in the budget ledger's
fields, with a decision (proceed / review / stop) and who owns the next check. It is evidence
about budgets: it reads the budgets, the exception queue, the source register and the latest
smoke run.

Rule (docs/budget-review.md; the table ``RULES``), the most severe finding wins:

- **stop** when the budget is exceeded (spend at or over its limit, hard or not), or when
  request evidence is missing (no allocated or shared event for the owner in the period);
- **review** when spend is over a soft threshold, when the owner has unpriced usage in the
  period, when no price entry used in the period was checked on the review date, or when the
  latest smoke test run did not pass;
- **proceed** otherwise.

Quarantined usage (owner unclear) never counts against a team budget; the review lists it in a
separate held-out section with its amount and reasons.

``charged`` is what the budget's owners are charged for the reviewed period: their allocation
entries (direct, reassigned, shared, true-up, adjustments), the figure their statement shows.
A money budget whose own period is the reviewed month (not limited to an environment, not
the shared pool's: its usage is what the rules split) is judged on it; other budgets (a day,
a week, an environment, the pool) on the ledger's spend in their period.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta

import sqlalchemy as sa

from spendtrail.allocation.entries import PeriodEntries, period_entries
from spendtrail.allocation.exceptions import open_groups
from spendtrail.budgets.enforce import BudgetState
from spendtrail.budgets.model import COUNTED_STATUSES, Budget, BudgetPeriod
from spendtrail.budgets.spend import ledger_spend
from spendtrail.budgets.store import list_budgets
from spendtrail.evidence.checklist import FINANCE_PARTNER, OWNER, PLATFORM_LEAD
from spendtrail.evidence.followups import open_follow_up
from spendtrail.evidence.smoke_log import SmokeRun, latest_smoke_run
from spendtrail.evidence.store import load_sources
from spendtrail.ledger.costs import is_current
from spendtrail.ledger.db import as_utc
from spendtrail.ledger.registry_versions import load_history
from spendtrail.ledger.schema import cost_entries, events, price_entries, rollups_daily
from spendtrail.money import from_pico, plain_decimal
from spendtrail.periods import Period

DEFAULT_REVIEWER_ROLE = "budget-operator"
DECISIONS = ("proceed", "review", "stop")


@dataclass(frozen=True, slots=True)
class _Seen:
    """What the ledger shows for one budget in the reviewed period: the rules' input."""

    budget: Budget
    period: Period
    review_date: date
    state: BudgetState
    events: int
    unpriced: int
    pricing_checked: bool
    smoke_failed: bool
    smoke_text: str


@dataclass(frozen=True, slots=True)
class Rule:
    decision: str  # stop | review
    code: str
    follow_up: str  # the role that owns the next check when this is the first finding
    holds: Callable[[_Seen], bool]
    reason: Callable[[_Seen], str]


# Every rule, most severe first; a row lists the reasons of those that hold, in this order, and
# takes its decision and follow-up owner from the first.
RULES: tuple[Rule, ...] = (
    Rule("stop", "exceeded", OWNER,
         lambda s: s.state.level in ("exceeded", "over"),
         lambda s: f"budget exceeded: {s.state.describe()}"),
    Rule("stop", "no_evidence", OWNER,
         lambda s: s.events == 0,
         lambda s: f"no request evidence: no events for {s.budget.describe_scope()} "
         f"in {s.period.label}"),
    Rule("review", "soft", OWNER,
         lambda s: s.state.level == "soft",
         lambda s: f"over soft threshold {s.state.threshold}%: {s.state.describe()}"),
    Rule("review", "unpriced", FINANCE_PARTNER,
         lambda s: s.unpriced > 0,
         lambda s: f"{s.unpriced} unpriced events in {s.period.label}"),
    Rule("review", "pricing_not_checked", FINANCE_PARTNER,
         lambda s: not s.pricing_checked,
         lambda s: f"no price entry used in {s.period.label} was checked on {s.review_date}"),
    Rule("review", "smoke_failed", PLATFORM_LEAD,
         lambda s: s.smoke_failed,
         lambda s: f"latest {s.smoke_text}"),
)


@dataclass(frozen=True, slots=True)
class BudgetReviewRow:
    """One budget ledger row. The first fourteen fields are the seeds' logging fields, in
    their order; the rest say what the decision rests on."""

    review_date: date
    reviewer_role: str
    source_urls_checked: tuple[str, ...]
    request_time_utc: datetime | None  # the owner's latest request in the period
    workload_label: str
    owner_group: str
    environment: str
    request_result: str
    usage_evidence_present: bool
    pricing_reference_checked: bool
    allocation_rule: str
    unit_metric_name: str
    decision: str
    follow_up_owner: str | None
    budget_id: str = ""
    budget_period: str = ""
    spent: str = ""
    limit: str = ""
    charged: str = ""  # the owners' charges for the reviewed period (allocation entries)
    state: str = ""
    events: int = 0
    unpriced_events: int = 0
    reasons: tuple[str, ...] = ()
    follow_up_id: int | None = None

    def record(self) -> dict[str, object]:
        """Flat, JSON-able: lists joined with '; ', booleans as yes/no, times ISO 8601 UTC."""
        data = asdict(self)
        data["review_date"] = self.review_date.isoformat()
        data["source_urls_checked"] = "; ".join(self.source_urls_checked)
        data["request_time_utc"] = (
            None if self.request_time_utc is None
            else self.request_time_utc.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        )
        data["usage_evidence_present"] = "yes" if self.usage_evidence_present else "no"
        data["pricing_reference_checked"] = "yes" if self.pricing_reference_checked else "no"
        data["reasons"] = "; ".join(self.reasons)
        return data


@dataclass(frozen=True, slots=True)
class HeldOut:
    """Quarantined usage in the period: held out of every team budget until allocated."""

    group_id: str
    captured_application: str
    reasons: str
    events: int
    amounts: dict[str, int] = field(default_factory=dict)  # pico-units per currency
    unpriced_events: int = 0

    def record(self) -> dict[str, object]:
        amount = ", ".join(f"{plain_decimal(from_pico(v))} {c}" for c, v in self.amounts.items())
        return {
            "group_id": self.group_id, "captured_application": self.captured_application,
            "reasons": self.reasons, "events": self.events, "amount": amount or "-",
            "unpriced_events": self.unpriced_events,
        }


@dataclass(frozen=True, slots=True)
class BudgetReview:
    period: Period
    review_date: date
    reviewer_role: str
    rows: tuple[BudgetReviewRow, ...]
    held_out: tuple[HeldOut, ...]

    def record(self) -> dict[str, object]:
        return {
            "period": self.period.label, "review_date": self.review_date.isoformat(),
            "reviewer_role": self.reviewer_role,
            "rows": [r.record() for r in self.rows],
            "held_out": [h.record() for h in self.held_out],
        }


def review_budgets(
    conn: sa.Connection, period: Period, *, review_date: date | None = None,
    reviewer_role: str = DEFAULT_REVIEWER_ROLE, actor: str, open_follow_ups: bool = True,
) -> BudgetReview:
    """Review every budget for `period` (run it in a transaction: follow-ups for rows whose
    decision is not proceed are opened, once per budget and period, and audited)."""
    review_date = review_date or datetime.now(UTC).date()
    latest = load_history(conn).latest()
    registry_version, registry = (None, None) if latest is None else latest
    register_urls = {s.source.url for s in load_sources(conn)}
    smoke = latest_smoke_run(conn)
    entries = period_entries(conn, period)
    rows = []
    for budget in list_budgets(conn):
        row = _review_one(conn, budget, period, review_date, reviewer_role, register_urls,
                          smoke, registry_version,
                          None if registry is None else registry.shared_pool.id, entries)
        if open_follow_ups and row.decision != "proceed" and row.follow_up_owner:
            item = open_follow_up(
                conn, origin="review", origin_id=f"budget-review:{budget.id}:{period.label}",
                question=f"budget {budget.id} {period.label}: {row.decision}: "
                + "; ".join(row.reasons),
                routed_to=row.follow_up_owner, actor=actor,
            )
            row = _replace(row, follow_up_id=item.id)
        rows.append(row)
    held = tuple(
        HeldOut(g.id, g.owner_label, g.reasons or "-", len(g.events), g.amounts, g.unpriced)
        for g in open_groups(conn, period)
    )
    return BudgetReview(period, review_date, reviewer_role, tuple(rows), held)


def _replace(row: BudgetReviewRow, **changes: object) -> BudgetReviewRow:
    return BudgetReviewRow(**{**asdict(row), **changes})  # type: ignore[arg-type]


def budget_period(budget: Budget, period: Period, review_date: date) -> BudgetPeriod:
    """The budget period the review checks the limit against: the one containing the review
    date when that falls inside the reviewed period, else the one containing its last day; a
    custom budget outside its range is measured over the reviewed period itself."""
    anchor = review_date if review_date in period else period.end - timedelta(days=1)
    found = budget.period_at(datetime.combine(anchor, time(), UTC))
    return found or BudgetPeriod(period.start, period.end, period.label)


def _review_one(
    conn: sa.Connection, budget: Budget, period: Period, review_date: date, reviewer_role: str,
    register_urls: set[str], smoke: SmokeRun | None, registry_version: int | None,
    shared_pool: str | None, entries: PeriodEntries,
) -> BudgetReviewRow:
    e = events.c
    owner = sa.and_(
        getattr(e, budget.scope) == budget.scope_value,
        e.allocation_status.in_(COUNTED_STATUSES),
        e.day >= period.start, e.day < period.end,
    )
    if budget.environment is not None:
        owner = sa.and_(owner, e.environment == budget.environment)
    count, last = conn.execute(sa.select(sa.func.count(), sa.func.max(e.started_at))
                               .where(owner)).one()
    workloads = sorted(w for (w,) in conn.execute(
        sa.select(e.workload_class).where(owner).distinct()) if w)
    environments = sorted(v for (v,) in conn.execute(
        sa.select(e.environment).where(owner).distinct()) if v)
    r = rollups_daily.c
    unpriced_q = sa.select(sa.func.coalesce(sa.func.sum(r.unpriced_events), 0)).where(
        getattr(r, budget.scope) == budget.scope_value, r.allocation_status.in_(COUNTED_STATUSES),
        r.day >= period.start, r.day < period.end)
    if budget.environment is not None:
        unpriced_q = unpriced_q.where(r.environment == budget.environment)
    unpriced = int(conn.execute(unpriced_q).scalar_one())
    # Price entries behind the owner's current costs in the period.
    p = price_entries.c
    used = conn.execute(
        sa.select(p.id, p.source_url, p.checked_at).distinct()
        .select_from(events.join(cost_entries, cost_entries.c.event_id == e.event_id)
                     .join(price_entries, p.id == cost_entries.c.price_entry_id))
        .where(owner, is_current())
    ).all()
    pricing_checked = any(_day(checked) == review_date for _, _, checked in used)
    urls = tuple(sorted(register_urls | {url for _, url, _ in used}))

    bperiod = budget_period(budget, period, review_date)
    charged = None
    if budget.currency:
        charged = sum(e.amount_pico for e in entries.entries
                      if e.charged and e.currency == budget.currency
                      and getattr(e, budget.scope) == budget.scope_value)
    is_pool = budget.scope == "application" and budget.scope_value == shared_pool
    judged_on_charges = (charged is not None and budget.environment is None and not is_pool
                         and (bperiod.start, bperiod.end) == (period.start, period.end))
    spent = charged if judged_on_charges else ledger_spend(conn, budget, bperiod)
    state = BudgetState(budget, bperiod, spent)
    smoke_text = "no smoke test run"
    smoke_failed = False
    if smoke is not None:
        smoke_failed = smoke.happy_path_result != "pass" or smoke.error_path_result != "pass"
        smoke_text = (f"smoke {smoke.run_id}: happy path {smoke.happy_path_result}, "
                      f"error path {smoke.error_path_result}")
    request_result = f"events: {count}; {smoke_text}"

    seen = _Seen(budget, period, review_date, state, int(count), unpriced, pricing_checked,
                 smoke_failed, smoke_text)
    findings = [rule for rule in RULES if rule.holds(seen)]
    decision = findings[0].decision if findings else "proceed"
    follow_up_owner = None
    if findings:
        follow_up_owner = findings[0].follow_up
        if budget.scope == "application" and budget.scope_value == shared_pool:
            follow_up_owner = PLATFORM_LEAD

    if budget.scope == "application" and budget.scope_value == shared_pool:
        allocation_rule = f"shared-cost rule: pool {shared_pool}, spread by the shared-cost rules"
    else:
        version = "" if registry_version is None else f" v{registry_version}"
        allocation_rule = f"owner map: registry{version} {budget.describe_scope()}"
    unit = (f"{budget.currency} cost per {budget.period}" if budget.currency
            else f"input+output tokens per {budget.period}")
    return BudgetReviewRow(
        review_date=review_date, reviewer_role=reviewer_role, source_urls_checked=urls,
        request_time_utc=None if last is None else as_utc(last),
        workload_label=", ".join(workloads) or "-",
        owner_group=budget.describe_scope().split(",")[0],
        environment=budget.environment or (", ".join(environments) or "any"),
        request_result=request_result, usage_evidence_present=count > 0,
        pricing_reference_checked=pricing_checked, allocation_rule=allocation_rule,
        unit_metric_name=unit,
        decision=decision, follow_up_owner=follow_up_owner, budget_id=budget.id,
        budget_period=bperiod.label, spent=_units(budget, state.spent),
        limit=_units(budget, budget.limit_units),
        charged="" if charged is None else _units(budget, charged), state=state.level,
        events=int(count),
        unpriced_events=unpriced, reasons=tuple(rule.reason(seen) for rule in findings),
    )


def _day(value: object) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return None if value is None else date.fromisoformat(str(value)[:10])


__all__ = [
    "DECISIONS",
    "DEFAULT_REVIEWER_ROLE",
    "RULES",
    "BudgetReview",
    "BudgetReviewRow",
    "HeldOut",
    "Rule",
    "budget_period",
    "review_budgets",
]


def _units(budget: Budget, units: int) -> str:
    """Money in plain digits (the review is also JSON and CSV: never 1.50E-7), then its unit."""
    if budget.currency:
        return f"{plain_decimal(from_pico(units))} {budget.currency}"
    return budget.format_units(units)
