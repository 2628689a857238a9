"""Budget enforcement on the request path: admit before a call, settle after it.

Spend in a budget period = ledger spend (daily rollups, read at load) - the part of the
counter the ledger already held at load + the counter. The counter holds what gateways
settled; subtracting the settled events found in the ledger is what keeps a reload from
counting an event twice. The "found in the ledger" check runs before the rollups are read:
an event ingested between the two reads is then counted twice until the next reload (too
much, never too little), so no snapshot isolation is needed on either database.

Admission reads the counters (memory: no I/O; SQL or Redis: one round trip for all budgets
the call falls under) and refuses when the spend already recorded is at or over a hard limit
(``>=``: a 100 USD budget with 100 USD spent refuses the next call). Settling increments the
counters atomically, so once a settle has crossed the limit no later admission passes. Calls
admitted before that, still in flight, finish and are counted: the overshoot is bounded by
the cost of the calls in flight when the limit was crossed (docs/budgets.md).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from spendtrail.budgets.counters import Charge, CounterKey, Counters, MemoryCounters
from spendtrail.budgets.model import SCOPES, Budget, BudgetPeriod
from spendtrail.budgets.spend import ledger_spend
from spendtrail.budgets.store import list_budgets
from spendtrail.ledger.schema import budget_alerts
from spendtrail.registry import Allocation

Level = Literal["ok", "soft", "over", "exceeded"]

# Counters outlive their period a little: a call that started on the last day may settle
# after midnight, and `budgets show` can still read the period just ended.
COUNTER_GRACE = timedelta(days=2)


@dataclass(frozen=True, slots=True)
class BudgetState:
    """One budget's spend in one period, as one admission or settle saw it."""

    budget: Budget
    period: BudgetPeriod
    spent: int  # in the budget's unit: pico-units of its currency, or tokens

    @property
    def percent(self) -> int:
        return self.spent * 100 // self.budget.limit_units

    @property
    def threshold(self) -> int | None:
        """The highest soft threshold reached, if any."""
        crossed = [t for t in self.budget.thresholds if self.reached(t)]
        return crossed[-1] if crossed else None

    @property
    def level(self) -> Level:
        if self.spent >= self.budget.limit_units:
            return "exceeded" if self.budget.hard_limit else "over"
        return "soft" if self.threshold is not None else "ok"

    def reached(self, threshold: int) -> bool:
        """Whether spend is at or over `threshold` percent of the limit."""
        return self.spent * 100 >= threshold * self.budget.limit_units

    def describe(self) -> str:
        budget = self.budget
        return (
            f"budget {budget.id!r} ({budget.describe_scope()}, {budget.period} "
            f"{self.period.label}): spent {budget.format_units(self.spent)} of "
            f"{budget.format_units(budget.limit_units)} ({self.percent}%)"
        )


@dataclass(frozen=True, slots=True)
class Admission:
    """The answer for one call: allowed or not, and every budget it falls under."""

    states: tuple[BudgetState, ...] = ()

    @property
    def refused_by(self) -> BudgetState | None:
        return next((s for s in self.states if s.level == "exceeded"), None)

    @property
    def allowed(self) -> bool:
        return self.refused_by is None

    def header(self) -> str:
        """The `X-Spendtrail-Budget` value: `search-monthly=82%;soft, cc-100=12%;ok`, or
        `none` when no budget applies."""
        if not self.states:
            return "none"
        return ", ".join(f"{s.budget.id}={s.percent}%;{s.level}" for s in self.states)

    def error(self) -> dict[str, Any]:
        """The body of the 429 for a refused call, in the OpenAI error shape."""
        state = self.refused_by
        if state is None:
            raise ValueError("the call was admitted; there is no error to report")
        budget = state.budget
        return {
            "error": {
                "message": f"{state.describe()}; the hard limit is reached, so calls are "
                f"refused until the period ends at {state.period.ends_at.isoformat()}",
                "type": "budget_exceeded",
                "param": None,
                "code": "budget_exceeded",
                "budget": budget.id,
                "period": state.period.label,
                "spent": budget.format_units(state.spent),
                "limit": budget.format_units(budget.limit_units),
            }
        }


NO_BUDGET = Admission()


class BudgetGuard:
    """Budgets loaded from the ledger, enforced in memory or with a shared counter store.

    `admit` and `settle` are thread-safe. With a shared store each does network I/O: call
    them off an event loop (e.g. ``asyncio.to_thread``). `reload` reads the ledger; call it
    on a timer (every minute or so) to pick up changed budgets and newly ingested spend.
    """

    def __init__(
        self, engine: sa.Engine, counters: Counters | None = None, *, read_only: bool = False
    ) -> None:
        self.engine = engine
        self.counters: Counters = counters if counters is not None else MemoryCounters()
        # A view such as `budgets show`: records no alerts and leaves the counters alone.
        self.read_only = read_only
        self._by_scope: dict[tuple[str, str], tuple[Budget, ...]] = {}
        self._budgets: tuple[Budget, ...] = ()
        self._base: dict[CounterKey, int] = {}
        self._alerted: set[tuple[str, date, int]] = set()  # budget id, period start, threshold
        self._lock = threading.Lock()

    @classmethod
    def load(
        cls, engine: sa.Engine, counters: Counters | None = None, *, at: datetime | None = None
    ) -> BudgetGuard:
        guard = cls(engine, counters)
        guard.reload(at)
        return guard

    def reload(self, at: datetime | None = None) -> None:
        """Re-read budget definitions and ledger spend for the periods containing `at`."""
        at = at or datetime.now(UTC)
        with self.engine.connect() as conn:
            budgets = list_budgets(conn)
            current = [(b, p) for b in budgets if (p := b.period_at(at)) is not None]
            keys = [(b.counter_id, p.start) for b, p in current]
            if not self.read_only:
                # By the clock, not `at`: a reload for another date must not drop live counters.
                self.counters.prune(datetime.now(UTC), keys)
            in_ledger = self.counters.in_ledger(conn, keys)  # before the rollups; see above
            base = {
                key: ledger_spend(conn, b, p) - in_ledger[key]
                for (b, p), key in zip(current, keys, strict=True)
            }
            alerted = _alerts_recorded(conn, [(b.id, p.start) for b, p in current])
        by_scope: dict[tuple[str, str], list[Budget]] = {}
        for budget in budgets:
            by_scope.setdefault((budget.scope, budget.scope_value), []).append(budget)
        with self._lock:
            self._alerted = alerted
        # Baselines first: an admission never sees a new budget without its ledger spend.
        self._base = base
        self._budgets = tuple(budgets)
        self._by_scope = {key: tuple(found) for key, found in by_scope.items()}
        if not self.read_only:  # spend imported into the ledger may have crossed a threshold
            for state in self.states(at):
                self._alert(state)

    def _matching(self, allocation: Allocation) -> list[Budget]:
        by_scope = self._by_scope
        found: list[Budget] = []
        for scope in SCOPES:
            value = getattr(allocation, scope)
            if value is not None:
                found.extend(b for b in by_scope.get((scope, value), ()) if b.matches(allocation))
        return found

    def _states(
        self, budgets: Sequence[Budget], at: datetime
    ) -> list[tuple[Budget, BudgetPeriod, CounterKey]]:
        return [
            (b, p, (b.counter_id, p.start))
            for b in budgets
            if (p := b.period_at(at)) is not None
        ]

    def admit(self, allocation: Allocation, at: datetime) -> Admission:
        """Whether a call for this owner may go ahead now. Quarantined calls fall under no
        budget (their owner is unproven); see docs/budgets.md."""
        budgets = self._matching(allocation)
        if not budgets:
            return NO_BUDGET
        found = self._states(budgets, at)
        totals = self.counters.read([key for _, _, key in found])
        base = self._base
        return Admission(
            tuple(
                BudgetState(b, p, base.get(key, 0) + total)
                for (b, p, key), total in zip(found, totals, strict=True)
            )
        )

    def settle(
        self,
        allocation: Allocation,
        *,
        event_id: str,
        cost_pico: int | None,
        currency: str | None,
        tokens: int,
        at: datetime,
    ) -> tuple[BudgetState, ...]:
        """Count one recorded call: its cost (None when unpriced) against the budgets in its
        currency, and its tokens (input + output) against token budgets. `event_id` is the
        id the ledger will hold the event under; `at` is when the call started (the ledger
        dates spend by it)."""
        charges: list[Charge] = []
        states: list[tuple[Budget, BudgetPeriod, CounterKey]] = []
        for budget, period, key in self._states(self._matching(allocation), at):
            if budget.currency is None:
                amount = tokens
            else:
                amount = (cost_pico or 0) if currency == budget.currency else 0
            if amount > 0:
                charges.append(Charge(key, amount, period.ends_at + COUNTER_GRACE))
                states.append((budget, period, key))
        if not charges:
            return ()
        totals = self.counters.add(event_id, charges)
        base = self._base
        result = tuple(
            BudgetState(b, p, base.get(key, 0) + total)
            for (b, p, key), total in zip(states, totals, strict=True)
        )
        if not self.read_only:
            for state in result:
                self._alert(state)
        return result

    def states(self, at: datetime) -> list[BudgetState]:
        """Every budget whose period contains `at`, with its spend."""
        found = self._states(self._budgets, at)
        totals = self.counters.read([key for _, _, key in found])
        base = self._base
        return [
            BudgetState(b, p, base.get(key, 0) + total)
            for (b, p, key), total in zip(found, totals, strict=True)
        ]

    def _alert(self, state: BudgetState) -> None:
        """Record each soft threshold reached for the first time in this period. The unique
        key keeps it to one row when several threads or gateways see the crossing."""
        budget_id, start = state.budget.id, state.period.start
        with self._lock:
            new = [
                t for t in state.budget.thresholds
                if state.reached(t) and (budget_id, start, t) not in self._alerted
            ]
            self._alerted.update((budget_id, start, t) for t in new)
        if not new:
            return
        insert = (postgresql if self.engine.dialect.name == "postgresql" else sqlite).insert
        rows = [
            {
                "budget_id": state.budget.id, "period_start": state.period.start,
                "period_label": state.period.label, "threshold": t, "spent": state.spent,
                "limit_units": state.budget.limit_units, "unit": state.budget.unit,
                "at": datetime.now(UTC),
            }
            for t in new
        ]
        with self.engine.begin() as conn:
            conn.execute(insert(budget_alerts).values(rows).on_conflict_do_nothing())


def _alerts_recorded(
    conn: sa.Connection, periods: Sequence[tuple[str, date]]
) -> set[tuple[str, date, int]]:
    if not periods:
        return set()
    a = budget_alerts.c
    rows = conn.execute(
        sa.select(a.budget_id, a.period_start, a.threshold).where(
            sa.tuple_(a.budget_id, a.period_start).in_(list(periods))
        )
    )
    return {(b, p, t) for b, p, t in rows}
