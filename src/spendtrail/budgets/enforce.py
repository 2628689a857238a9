"""Budget enforcement on the request path: admit before a call, settle after it.

Spend in a budget period = ledger spend (daily rollups, read at load) - the part of the
counter the ledger already held at load + the counter. The counter holds what gateways
settled; subtracting the settled events found in the ledger is what keeps a reload from
counting an event twice. The "found in the ledger" check runs before the rollups are read:
an event ingested between the two reads is then counted twice until the next reload (too
much, never too little), so no snapshot isolation is needed on either database.

Admission reserves the call's estimated cost on every budget it falls under, in one atomic
operation per store (memory: a lock; SQL: one transaction of conditional upserts; Redis: one
Lua script per budget), and is refused when spent + reserved is at a hard limit or the
estimate would take it past the limit. Settling releases the reservation and adds the real
cost in one atomic step. So calls in flight are counted by what they may cost before they
cost it, and the overshoot is bounded by how far real costs exceed their estimates
(docs/budgets.md).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from spendtrail.budgets.counters import (
    Charge,
    CounterKey,
    Counters,
    Hold,
    MemoryCounters,
)
from spendtrail.budgets.model import SCOPES, Budget, BudgetPeriod
from spendtrail.budgets.spend import ledger_spend
from spendtrail.budgets.store import list_budgets
from spendtrail.ledger.schema import budget_alerts
from spendtrail.registry import Allocation

Level = Literal["ok", "soft", "over", "exceeded"]

# Counters outlive their period a little: a call that started on the last day may settle
# after midnight, and `budgets show` can still read the period just ended.
COUNTER_GRACE = timedelta(days=2)
# A reservation never settled (its gateway crashed) is dropped at a reload after this long.
HOLD_FOR = timedelta(minutes=30)


@dataclass(frozen=True, slots=True)
class Estimate:
    """What a call may cost at most, as far as the gateway can tell before sending it:
    `cost_pico` in `currency` (None: unpriced, reserves nothing against money budgets) and
    input + output `tokens`."""

    cost_pico: int | None
    currency: str | None
    tokens: int


NO_ESTIMATE = Estimate(None, None, 0)


@dataclass(frozen=True, slots=True)
class BudgetState:
    """One budget's spend in one period, as one admission or settle saw it."""

    budget: Budget
    period: BudgetPeriod
    spent: int  # in the budget's unit: pico-units of its currency, or tokens
    reserved: int = 0  # held by calls in flight (this one's included when admitted)
    refused: bool = False  # this call's reservation did not fit under the hard limit
    estimate: int = 0  # what this call reserved, or asked to

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
        if self.refused:
            return "exceeded"
        if self.spent >= self.budget.limit_units:
            return "exceeded" if self.budget.hard_limit else "over"
        return "soft" if self.threshold is not None else "ok"

    def reached(self, threshold: int) -> bool:
        """Whether spend is at or over `threshold` percent of the limit."""
        return self.spent * 100 >= threshold * self.budget.limit_units

    def describe(self) -> str:
        budget = self.budget
        held = f", {budget.format_units(self.reserved)} reserved by calls in flight" if (
            self.reserved) else ""
        return (
            f"budget {budget.id!r} ({budget.describe_scope()}, {budget.period} "
            f"{self.period.label}): spent {budget.format_units(self.spent)} of "
            f"{budget.format_units(budget.limit_units)} ({self.percent}%){held}"
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

    def retry_after(self, now: datetime) -> int:
        """Whole seconds until the refusing budget's period ends (at least 1)."""
        state = self.refused_by
        if state is None:
            raise ValueError("the call was admitted; there is nothing to wait for")
        return max(1, math.ceil((state.period.ends_at - now).total_seconds()))

    def error(self) -> dict[str, Any]:
        """The body of the 429 for a refused call, in the OpenAI error shape."""
        state = self.refused_by
        if state is None:
            raise ValueError("the call was admitted; there is no error to report")
        budget = state.budget
        ends = state.period.ends_at.isoformat()
        if state.spent >= budget.limit_units:
            reason = ("the hard limit is reached, so calls are refused until the period ends "
                      f"at {ends}")
        else:
            reason = (f"this call's estimated cost, {budget.format_units(state.estimate)}, "
                      "would cross the hard limit, so it is refused (a smaller call may fit "
                      f"once calls in flight settle; the period ends at {ends})")
        return {
            "error": {
                "message": f"{state.describe()}; {reason}",
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
        self._pending: dict[str, list[CounterKey]] = {}  # reservation id -> counters held
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

    def budgets(self) -> tuple[Budget, ...]:
        """The budgets as of the last reload."""
        return self._budgets

    def applies(self, allocation: Allocation) -> bool:
        """Whether any budget counts this owner's calls (no: admit and settle do nothing)."""
        return bool(self._matching(allocation))

    def _matching(self, allocation: Allocation) -> list[Budget]:
        by_scope = self._by_scope
        found: list[Budget] = []
        if not by_scope:  # no budgets: every call of a gateway without any asks twice
            return found
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

    def admit(
        self, allocation: Allocation, at: datetime, *, reservation_id: str | None = None,
        estimate: Estimate = NO_ESTIMATE,
    ) -> Admission:
        """Whether a call for this owner may go ahead now. With a `reservation_id` (the
        call's event id), an admitted call holds `estimate` on every budget it falls under
        until `settle` or `release`; without one, this only looks (refused when spent +
        reserved is at a hard limit). Quarantined calls fall under no budget (their owner is
        unproven); see docs/budgets.md."""
        budgets = self._matching(allocation)
        if not budgets:
            return NO_BUDGET
        found = self._states(budgets, at)
        base = self._base
        if reservation_id is None:
            seen = self.counters.read([key for _, _, key in found])
            return Admission(tuple(
                BudgetState(b, p, base.get(key, 0) + spent, reserved, refused=b.hard_limit
                            and base.get(key, 0) + spent + reserved >= b.limit_units)
                for (b, p, key), (spent, reserved) in zip(found, seen, strict=True)
            ))
        until = datetime.now(UTC) + HOLD_FOR
        holds = [
            Hold(key, _amount(b, estimate.cost_pico, estimate.currency, estimate.tokens),
                 b.limit_units - base.get(key, 0) if b.hard_limit else None,
                 p.ends_at + COUNTER_GRACE, until)
            for b, p, key in found
        ]
        held = self.counters.reserve(reservation_id, holds)
        granted = all(h.granted for h in held)
        if granted:
            with self._lock:
                self._pending[reservation_id] = [hold.key for hold in holds]
        states = [
            BudgetState(b, p, base.get(key, 0) + h.spent, h.reserved,
                        refused=not granted and not hold.fits(h.spent, h.reserved),
                        estimate=hold.amount)
            for (b, p, key), h, hold in zip(found, held, holds, strict=True)
        ]
        if not granted and not any(s.refused for s in states):
            # The room was taken and given back between the refusal and the read that
            # reports it: name the first hard budget rather than none.
            first = next(i for i, hold in enumerate(holds) if hold.room is not None)
            states[first] = replace(states[first], refused=True)
        return Admission(tuple(states))

    def release(self, reservation_id: str) -> None:
        """Drop an admitted call's reservation: it was not made, or will not be settled."""
        with self._lock:
            keys = self._pending.pop(reservation_id, None)
        if keys:
            self.counters.release(reservation_id, keys)

    def settle(
        self,
        allocation: Allocation,
        *,
        event_id: str,
        cost_pico: int | None,
        currency: str | None,
        tokens: int,
        at: datetime,
        reservation_id: str | None = None,
    ) -> tuple[BudgetState, ...]:
        """Count one recorded call: its cost (None when unpriced) against the budgets in its
        currency, and its tokens (input + output) against token budgets, releasing its
        reservation in the same atomic step. `event_id` is the id the ledger will hold the
        event under; `at` is when the call started (the ledger dates spend by it)."""
        charges: list[Charge] = []
        states: list[tuple[Budget, BudgetPeriod, CounterKey]] = []
        for budget, period, key in self._states(self._matching(allocation), at):
            amount = _amount(budget, cost_pico, currency, tokens)
            if amount > 0:
                charges.append(Charge(key, amount, period.ends_at + COUNTER_GRACE))
                states.append((budget, period, key))
        release = None
        if reservation_id is not None:
            with self._lock:
                keys = self._pending.pop(reservation_id, None)
            release = (reservation_id, keys) if keys else None
        if not charges:
            if release is not None:
                self.counters.release(*release)
            return ()
        totals = self.counters.add(event_id, charges, release)
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
        seen = self.counters.read([key for _, _, key in found])
        base = self._base
        return [
            BudgetState(b, p, base.get(key, 0) + spent, reserved)
            for (b, p, key), (spent, reserved) in zip(found, seen, strict=True)
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


def _amount(budget: Budget, cost_pico: int | None, currency: str | None, tokens: int) -> int:
    """What a call counts against a budget: tokens, or its cost in the budget's currency
    (an unpriced call, or one in another currency, counts nothing against money)."""
    if budget.currency is None:
        return tokens
    return (cost_pico or 0) if currency == budget.currency else 0


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
