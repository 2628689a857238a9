"""The budget gate: where budget enforcement plugs into the request path.

The gateway asks ``check`` before forwarding a call (a refused call gets 429
``budget_exceeded`` and is never sent) and tells ``record`` about every attempt after
journaling it. ``state`` goes back to the caller in ``X-Spendtrail-Budget``. ``NoBudgets``
allows everything; ``GuardedBudgets`` enforces the ledger's budgets with a
``spendtrail.budgets.BudgetGuard``. With shared counters (PostgreSQL, Redis) the guard does
network I/O, so it runs on a worker thread instead of the event loop.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, Protocol

from spendtrail.budgets import BudgetGuard
from spendtrail.events.model import UsageEvent
from spendtrail.pricing import CostBreakdown
from spendtrail.registry import Allocation


@dataclass(frozen=True, slots=True)
class BudgetDecision:
    state: str  # the X-Spendtrail-Budget value: "none", or "id=pct%;level, ..."
    refusal: dict[str, Any] | None = None  # the OpenAI-shaped error of a refused call

    @property
    def allow(self) -> bool:
        return self.refusal is None


NO_BUDGET = BudgetDecision("none")


class BudgetGate(Protocol):
    async def check(self, allocation: Allocation | None, at: datetime) -> BudgetDecision: ...

    def record(self, allocation: Allocation | None, event: UsageEvent,
               cost: CostBreakdown | None) -> None: ...

    def reload(self) -> None: ...


class NoBudgets:
    async def check(self, allocation: Allocation | None, at: datetime) -> BudgetDecision:
        return NO_BUDGET

    def record(self, allocation: Allocation | None, event: UsageEvent,
               cost: CostBreakdown | None) -> None:
        return None

    def reload(self) -> None:
        return None


class GuardedBudgets:
    """The ledger's budgets. Calls without an allocation (no registry) match no budget."""

    def __init__(self, guard: BudgetGuard) -> None:
        self.guard = guard
        self._shared = guard.counters.shared

    async def check(self, allocation: Allocation | None, at: datetime) -> BudgetDecision:
        if allocation is None:
            return NO_BUDGET
        admit = partial(self.guard.admit, allocation, at)
        admission = await asyncio.to_thread(admit) if self._shared else admit()
        if admission.allowed:
            return BudgetDecision(admission.header())
        return BudgetDecision(admission.header(), admission.error()["error"])

    def record(self, allocation: Allocation | None, event: UsageEvent,
               cost: CostBreakdown | None) -> None:
        if allocation is None:
            return
        usage = event.usage
        settle = partial(
            self.guard.settle, allocation, event_id=event.event_id,
            cost_pico=cost.total_pico if cost else None, currency=cost.currency if cost else None,
            tokens=usage.input_tokens + usage.output_tokens, at=event.started_at)
        if self._shared:
            # Off the event loop; until it lands, this call counts as one more in flight.
            asyncio.get_running_loop().run_in_executor(None, settle)
        else:
            settle()

    def reload(self) -> None:
        self.guard.reload()
