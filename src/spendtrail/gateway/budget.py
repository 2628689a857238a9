"""The budget gate: where budget enforcement plugs into the request path.

The gateway asks ``check`` before forwarding a call (a refused call gets 429
``budget_exceeded`` and is never sent), tells ``record`` about every attempt after
journaling it, and calls ``release`` when an admitted call ends without a record. ``state``
goes back to the caller in ``X-Spendtrail-Budget``. ``NoBudgets`` allows everything;
``GuardedBudgets`` enforces the ledger's budgets with a ``spendtrail.budgets.BudgetGuard``:
``check`` reserves the call's estimated cost (``estimate``), ``record`` settles it to the real
cost. With shared counters (PostgreSQL, Redis) the guard does network I/O, so it runs on a
worker thread instead of the event loop.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, Protocol

from spendtrail.budgets import NO_ESTIMATE, BudgetGuard, Estimate
from spendtrail.events.model import Usage, UsageEvent
from spendtrail.pricing import CostBreakdown, PriceEntry, price_usage
from spendtrail.registry import Allocation

# Output a call may write when it names no max_tokens / max_completion_tokens /
# max_output_tokens: reserved in full, settled to what the provider reports.
DEFAULT_OUTPUT_TOKENS = 4096
BYTES_PER_TOKEN = 4  # the input estimate: the request body's size / 4, rounded up
_OUTPUT_LIMITS = ("max_completion_tokens", "max_tokens", "max_output_tokens")


@dataclass(frozen=True, slots=True)
class Outgoing:
    """What the gateway knows of a call before sending it: enough for its estimate."""

    endpoint: str
    payload: Mapping[str, Any] | None  # the JSON body of a metered endpoint
    body_size: int
    price: PriceEntry | None  # the catalog's entry for the requested model, if any


@dataclass(frozen=True, slots=True)
class BudgetDecision:
    state: str  # the X-Spendtrail-Budget value: "none", or "id=pct%;level, ..."
    refusal: dict[str, Any] | None = None  # the OpenAI-shaped error of a refused call
    # Sent with a refusal: the SDKs must not retry what only the period's end can change.
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def allow(self) -> bool:
        return self.refusal is None


NO_BUDGET = BudgetDecision("none")


class BudgetGate(Protocol):
    async def check(self, allocation: Allocation | None, at: datetime, call_id: str,
                    outgoing: Outgoing) -> BudgetDecision: ...

    def record(self, allocation: Allocation | None, event: UsageEvent,
               cost: CostBreakdown | None) -> None: ...

    def release(self, call_id: str) -> None: ...

    def reload(self) -> None: ...


class NoBudgets:
    async def check(self, allocation: Allocation | None, at: datetime, call_id: str,
                    outgoing: Outgoing) -> BudgetDecision:
        return NO_BUDGET

    def record(self, allocation: Allocation | None, event: UsageEvent,
               cost: CostBreakdown | None) -> None:
        return None

    def release(self, call_id: str) -> None:
        return None

    def reload(self) -> None:
        return None


def estimate_usage(outgoing: Outgoing, output_tokens: int = DEFAULT_OUTPUT_TOKENS) -> Usage:
    """The most a call is expected to use: input tokens from the body's size, output tokens
    from the request's own limit (else `output_tokens`), and the images it asks for. Calls
    to unmetered endpoints use nothing."""
    payload = outgoing.payload
    if payload is None:
        return Usage()
    input_tokens = math.ceil(outgoing.body_size / BYTES_PER_TOKEN)
    if outgoing.endpoint == "/v1/embeddings":
        return Usage(input_tokens=input_tokens, requests=1)
    choices = _count(payload.get("n")) or 1
    if outgoing.endpoint == "/v1/images/generations":
        return Usage(input_tokens=input_tokens, images=choices, requests=1)
    limit = next((n for name in _OUTPUT_LIMITS if (n := _count(payload.get(name)))), None)
    return Usage(input_tokens=input_tokens, output_tokens=(limit or output_tokens) * choices,
                 requests=1)


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


class GuardedBudgets:
    """The ledger's budgets. Calls without an allocation (no registry) match no budget.
    `output_tokens` is the output reserved for a call that names no limit; `model_output`
    overrides it per requested model."""

    def __init__(self, guard: BudgetGuard, *, output_tokens: int = DEFAULT_OUTPUT_TOKENS,
                 model_output: Mapping[str, int] | None = None) -> None:
        self.guard = guard
        self.output_tokens = output_tokens
        self.model_output = dict(model_output or {})
        self._shared = guard.counters.shared
        # Admitted calls not yet recorded. Only the event loop's thread touches it, so a
        # release after the record (settled on a worker thread) never races the settle.
        self._open: set[str] = set()

    def estimate(self, outgoing: Outgoing, model: str | None = None) -> Estimate:
        usage = estimate_usage(outgoing, self.model_output.get(model or "", self.output_tokens))
        if not any((usage.input_tokens, usage.output_tokens, usage.images)):
            return NO_ESTIMATE
        tokens = usage.input_tokens + usage.output_tokens
        if outgoing.price is None:  # unpriced: counts nothing against money, so holds none
            return Estimate(None, None, tokens)
        cost = price_usage(usage, outgoing.price)
        return Estimate(cost.total_pico, cost.currency, tokens)

    async def check(self, allocation: Allocation | None, at: datetime, call_id: str,
                    outgoing: Outgoing) -> BudgetDecision:
        # No budget for this owner: no estimate to price, no trip to a shared store.
        if allocation is None or not self.guard.applies(allocation):
            return NO_BUDGET
        model = outgoing.payload.get("model") if outgoing.payload else None
        admit = partial(self.guard.admit, allocation, at, reservation_id=call_id,
                        estimate=self.estimate(outgoing, model if isinstance(model, str) else None))
        admission = await self._off_loop(admit, call_id) if self._shared else admit()
        if admission.allowed:
            if admission.states:
                self._open.add(call_id)
            return BudgetDecision(admission.header())
        return BudgetDecision(
            admission.header(), admission.error()["error"],
            {"x-should-retry": "false", "Retry-After": str(admission.retry_after(at))})

    async def _off_loop(self, admit: partial, call_id: str) -> Any:
        """Admit on a worker thread. A request cancelled meanwhile (its client went away)
        leaves the thread running: whatever it reserves is released when it is done."""
        work = asyncio.ensure_future(asyncio.to_thread(admit))
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            loop = asyncio.get_running_loop()
            work.add_done_callback(
                lambda _: loop.run_in_executor(None, self.guard.release, call_id))
            raise

    def record(self, allocation: Allocation | None, event: UsageEvent,
               cost: CostBreakdown | None) -> None:
        held = event.event_id in self._open
        self._open.discard(event.event_id)
        # Nothing held and no budget for this owner (now): settling would change nothing.
        if allocation is None or not (held or self.guard.applies(allocation)):
            return
        usage = event.usage
        settle = partial(
            self.guard.settle, allocation, event_id=event.event_id,
            cost_pico=cost.total_pico if cost else None, currency=cost.currency if cost else None,
            tokens=usage.input_tokens + usage.output_tokens, at=event.started_at,
            reservation_id=event.event_id)
        if self._shared:
            # Off the event loop; until it lands, the call's reservation still holds.
            asyncio.get_running_loop().run_in_executor(None, settle)
        else:
            settle()

    def release(self, call_id: str) -> None:
        """Drop the reservation of an admitted call that ends without a record (a client
        gone before the provider answered); a no-op for a recorded call."""
        if call_id not in self._open:
            return
        self._open.discard(call_id)
        if self._shared:
            asyncio.get_running_loop().run_in_executor(None, self.guard.release, call_id)
        else:
            self.guard.release(call_id)

    def reload(self) -> None:
        self.guard.reload()
