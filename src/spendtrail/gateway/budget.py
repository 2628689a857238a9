"""The budget hook: where budget enforcement plugs into the request path.

The gateway asks ``check`` before forwarding a call (a refused call gets 429 and is never
sent) and tells ``record`` about every attempt after journaling it. ``state`` goes back to
the caller in ``X-Spendtrail-Budget``. Until budgets exist, ``NoBudgets`` allows everything
and reports ``none``. Both calls run on the event loop: keep them to in-memory work, or
await a shared store (PostgreSQL, Redis) when a budget must hold across replicas.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from spendtrail.events.model import AllocationContext, UsageEvent
from spendtrail.pricing import CostBreakdown


@dataclass(frozen=True, slots=True)
class BudgetDecision:
    state: str  # e.g. none | ok | warning | exceeded
    allow: bool = True
    message: str = ""


class BudgetGate(Protocol):
    async def check(self, context: AllocationContext, model: str | None) -> BudgetDecision: ...

    def record(self, event: UsageEvent, cost: CostBreakdown | None) -> None: ...


class NoBudgets:
    _NONE = BudgetDecision("none")

    async def check(self, context: AllocationContext, model: str | None) -> BudgetDecision:
        return self._NONE

    def record(self, event: UsageEvent, cost: CostBreakdown | None) -> None:
        return None
