"""The cost function: (usage meters, price entry) -> exact cost per meter and total.

Meters that are parts of another (events/model.py) are split out of their parent the way
genai-prices splits usage into leaves: a part with its own price is billed at that price and
taken out of the parent; a part without one stays at the parent's price. Concretely:

- input: uncached input = input - cached - cache_write (- input_audio when it has its own
  price), at the input price. Cached tokens without a cache-read price, cache writes without
  a cache-write price and input audio without an audio price are billed at the input price
  and flagged (``cache_read_price_missing``, ...), never silently at 0.
- output: reasoning tokens are output tokens; they are billed separately only when the entry
  prices ``reasoning_tokens``. Output audio without its own price is billed at the output
  price and flagged ``output_audio_price_missing``.
- ``requests`` is billed only when the entry has a per-request price: most models charge no
  per-call fee, and the meter counts calls that the token meters already bill.
- any other non-zero meter without a price (and a parent leaf without one) makes the result
  ``incomplete`` with flag ``no_price:<meter>``; parts larger than their parent give
  ``parts_exceed:<meter>``. An incomplete total is a lower bound, never a guess.

All arithmetic is on integer pico-units, so the result is exact; ``seconds`` may be
fractional, and the only rounding anywhere (half-even, to a pico-unit) is flagged
``rounded_to_pico:seconds``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from spendtrail.events.model import METERS, Usage
from spendtrail.money import from_pico
from spendtrail.pricing.model import PriceEntry

PRICED = "priced"
INCOMPLETE = "incomplete"


@dataclass(frozen=True, slots=True)
class CostBreakdown:
    """Exact integer pico-units (what the ledger stores), with Decimal views for people."""

    status: str  # priced | incomplete
    currency: str
    total_pico: int
    per_meter_pico: dict[str, int]
    flags: tuple[str, ...]

    @property
    def total(self) -> Decimal:
        return from_pico(self.total_pico)

    @property
    def per_meter(self) -> dict[str, Decimal]:
        return {meter: from_pico(pico) for meter, pico in self.per_meter_pico.items()}


def price_usage(usage: Usage, entry: PriceEntry) -> CostBreakdown:
    """Price one event's meters with one entry. Pure: no I/O, no clock, no float."""
    prices = entry.pico_prices
    total_input = usage.input_tokens
    for threshold, tier_prices in entry.pico_tiers:
        if total_input > threshold:
            prices = tier_prices
            break

    costs: dict[str, int] = {}
    flags: list[str] = []
    _split(
        prices, costs, flags, "input_tokens", total_input,
        (
            ("cached_input_tokens", usage.cached_input_tokens, "cache_read_price_missing"),
            ("cache_write_tokens", usage.cache_write_tokens, "cache_write_price_missing"),
            ("input_audio_tokens", usage.input_audio_tokens, "input_audio_price_missing"),
        ),
    )
    _split(
        prices, costs, flags, "output_tokens", usage.output_tokens,
        (
            ("reasoning_tokens", usage.reasoning_tokens, None),
            ("output_audio_tokens", usage.output_audio_tokens, "output_audio_price_missing"),
        ),
    )
    if usage.requests and (price := prices.get("requests")) is not None:
        costs["requests"] = usage.requests * price
    if usage.images:
        if (price := prices.get("images")) is None:
            flags.append("no_price:images")
        else:
            costs["images"] = usage.images * price
    if usage.seconds:
        if (price := prices.get("seconds")) is None:
            flags.append("no_price:seconds")
        else:
            exact = usage.seconds * price
            rounded = exact.to_integral_value(ROUND_HALF_EVEN)
            if rounded != exact:
                flags.append("rounded_to_pico:seconds")
            costs["seconds"] = int(rounded)

    incomplete = any(f.startswith(("no_price:", "parts_exceed:")) for f in flags)
    return CostBreakdown(
        status=INCOMPLETE if incomplete else PRICED,
        currency=entry.currency,
        total_pico=sum(costs.values()),
        per_meter_pico={meter: costs[meter] for meter in METERS if meter in costs},
        flags=tuple(flags),
    )


def _split(
    prices: dict[str, int],
    costs: dict[str, int],
    flags: list[str],
    parent: str,
    count: int,
    parts: tuple[tuple[str, int, str | None], ...],
) -> None:
    """Bill `parent`'s count: parts at their own price, the rest at the parent's price."""
    parent_price = prices.get(parent)
    rest = count
    for meter, part, missing_flag in parts:
        if not part:
            continue
        price = prices.get(meter)
        if price is None:
            if missing_flag is None:
                continue  # billed as part of the parent, as the provider does
            if parent_price is None:
                flags.append(f"no_price:{meter}")
                rest -= part
                continue
            price = parent_price
            flags.append(missing_flag)
        costs[meter] = part * price
        rest -= part
    if rest < 0:
        flags.append(f"parts_exceed:{parent}")
    elif rest:
        if parent_price is None:
            flags.append(f"no_price:{parent}")
        else:
            costs[parent] = rest * parent_price
