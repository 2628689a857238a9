"""Price entries: what one provider charges, for the models one match selects, in one window.

An entry's ``prices`` map is keyed by the ``Usage`` meter names. Token meters and
``input_characters`` are priced per 1,000,000 and may carry at most 6 decimal places;
``requests``, ``images`` and ``seconds`` are priced per unit and may carry at most 12.
Costs are kept in integer pico-units (``spendtrail.money``), so these limits make every
computed cost exact: a price finer than that is rejected, never rounded.

Tiers follow genai-prices: a tier applies when the request's *total* input tokens
(``input_tokens``, cached and cache-write included) are strictly above its threshold, and it
then prices *all* tokens of the meters it lists (a cliff, not a graduated scale). The highest
applicable tier wins; a meter a tier does not list keeps the price of the nearest lower tier
that lists it, else the base price.

An entry with a ``service_tier`` (``batch``, ``flex``, ``priority``...) prices only events
billed at that tier; one without prices the standard tier (and, flagged, a tier that has no
entry of its own: see ``catalog.py``).

Model matching is on the lower-cased model name: ``exact`` compares it to the lower-cased
match, ``glob`` is ``fnmatch`` (``*``, ``?``, ``[...]``) on lower-cased text, and ``regex`` is
``re.search`` (anchor with ``^``/``$`` to match the whole name), as genai-prices does.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

from spendtrail.errors import SpendtrailError
from spendtrail.events.model import METERS, service_tier_of
from spendtrail.money import parse_decimal

TOKEN_METERS: tuple[str, ...] = (
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
    "reasoning_tokens",
    "input_audio_tokens",
    "output_audio_tokens",
    "input_image_tokens",
    "output_image_tokens",
)
CHARACTER_METERS: tuple[str, ...] = ("input_characters",)
UNIT_METERS: tuple[str, ...] = ("requests", "images", "seconds")
PER_MILLION_METERS = frozenset(TOKEN_METERS + CHARACTER_METERS)
TOKEN_PRICE_PLACES = 6  # per 1M: 10**-6 per 1M = 10**-12 per token or character
UNIT_PRICE_PLACES = 12

KINDS = ("contracted", "list")  # contracted: verified for this account; list: reference price
MATCH_KINDS = ("exact", "glob", "regex")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_MAX_ID = 200  # price_entries.id and cost_entries.price_entry_id are VARCHAR(200)
_MAX_MATCH = 500
_CURRENCY = re.compile(r"^[A-Z]{3}$")


class PricingError(SpendtrailError):
    """A price entry, sheet or import that cannot be used; the message names the field."""


def check_price(meter: str, value: object, field_name: str | None = None) -> Decimal:
    """Validate one price for `meter`; text, int or Decimal only, never float."""
    name = field_name or f"prices.{meter}"
    if meter not in METERS:
        raise PricingError(f"{name}: unknown meter {meter!r}; expected one of {', '.join(METERS)}")
    if isinstance(value, float):
        raise PricingError(f"{name}: pass prices as text or Decimal, not float ({value!r})")
    amount = parse_decimal(value, field=name)
    if amount < 0:
        raise PricingError(f"{name}: a price cannot be negative, got {value}")
    places = max(0, -int(amount.normalize().as_tuple().exponent))
    if meter in PER_MILLION_METERS:
        what = "tokens" if meter in TOKEN_METERS else "characters"
        limit, unit = TOKEN_PRICE_PLACES, f"a price per 1M {what}"
    else:
        limit, unit = UNIT_PRICE_PLACES, f"a price per {meter.rstrip('s')}"
    if places > limit:
        raise PricingError(
            f"{name}: {value} has {places} decimal places; {unit} may have at most {limit}, "
            "so that every cost is exact to the pico-unit"
        )
    return amount


def _pico_per_unit(meter: str, price: Decimal) -> int:
    """Price -> integer pico-units per token or character (per-1M meters) or per unit."""
    return int(price.scaleb(6 if meter in PER_MILLION_METERS else 12))


def parse_instant(value: object, field_name: str) -> datetime:
    """A date (00:00 UTC) or an ISO timestamp with a UTC offset -> aware UTC datetime."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        return datetime.combine(value, time(), UTC)
    else:
        text = str(value).strip()
        try:
            if len(text) == 10:
                return datetime.combine(date.fromisoformat(text), time(), UTC)
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise PricingError(
                f"{field_name}: expected a date (YYYY-MM-DD) or a timestamp with a UTC offset, "
                f"got {value!r}"
            ) from None
    if moment.tzinfo is None:
        raise PricingError(f"{field_name}: timestamp {value} needs a UTC offset (e.g. Z)")
    return moment.astimezone(UTC)


def parse_day(value: object, field_name: str) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        raise PricingError(f"{field_name}: expected a date YYYY-MM-DD, got {value!r}") from None


def _dec_str(amount: Decimal) -> str:
    """Canonical text of a Decimal: no exponent, no trailing zeros ("2.50" -> "2.5")."""
    return format(amount.normalize(), "f")


def instant_str(moment: datetime) -> str:
    """A UTC instant as short text: the date alone at midnight, else an ISO timestamp."""
    if moment.time() == time():
        return moment.date().isoformat()
    return moment.isoformat().replace("+00:00", "Z")


def _compile_match(match_kind: str, pattern: str) -> re.Pattern[str] | None:
    """The compiled matcher of a glob or regex match; None for an exact match."""
    if match_kind == "exact":
        return None
    if match_kind == "glob":
        return re.compile(fnmatch.translate(pattern))
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise PricingError(f"model: invalid regex {pattern!r}: {exc}") from None


def check_regex_case(pattern: str) -> None:
    """Regexes meet lower-cased model names, so an upper-case letter could never match."""
    first, *escaped = pattern.split("\\")
    letters = first + "".join(part[1:] for part in escaped)  # escapes like \D are not letters
    if any(c.isupper() for c in letters):
        raise PricingError(
            f"model: regex {pattern!r} is matched against the lower-cased model name; "
            "write it in lower case"
        )


@dataclass(frozen=True, slots=True)
class Tier:
    """Prices that replace the base prices once total input tokens exceed the threshold."""

    above_input_tokens: int
    prices: Mapping[str, Decimal]


@dataclass(frozen=True, kw_only=True)
class PriceEntry:
    """One price: validated and normalized on construction, immutable after."""

    provider: str
    model_match: str
    match_kind: str = "exact"
    kind: str
    currency: str = "USD"
    prices: Mapping[str, Decimal]
    tiers: tuple[Tier, ...] = ()
    effective_from: datetime = EPOCH
    effective_to: datetime | None = None
    service_tier: str | None = None  # None: the standard tier
    source_url: str
    checked_at: date
    checked_by: str
    origin: str
    source_id: str | None = None
    id: str = ""  # derived from provider, match, kind and effective_from when empty

    # Derived once so matching and pricing do no parsing per event.
    matcher: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    pico_prices: dict[str, int] = field(init=False, repr=False, compare=False)
    pico_tiers: tuple[tuple[int, dict[str, int]], ...] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        setattr_ = object.__setattr__
        provider = self.provider.strip().lower()
        if not provider or len(provider) > 200:
            raise PricingError(f"provider: expected 1 to 200 characters, got {self.provider!r}")
        setattr_(self, "provider", provider)
        if self.match_kind not in MATCH_KINDS:
            raise PricingError(
                f"match: expected one of {', '.join(MATCH_KINDS)}, got {self.match_kind!r}"
            )
        pattern = self.model_match.strip()
        if self.match_kind != "regex":
            pattern = pattern.lower()
        if not pattern or len(pattern) > _MAX_MATCH:
            raise PricingError(f"model: expected 1 to {_MAX_MATCH} characters, got {pattern!r}")
        setattr_(self, "model_match", pattern)
        setattr_(self, "matcher", _compile_match(self.match_kind, pattern))
        setattr_(self, "service_tier", _check_tier(self.service_tier))
        if self.kind not in KINDS:
            raise PricingError(f"kind: expected one of {', '.join(KINDS)}, got {self.kind!r}")
        if not _CURRENCY.match(self.currency):
            raise PricingError(
                f"currency: expected a 3-letter ISO 4217 code like USD, got {self.currency!r}"
            )
        if not self.prices:
            raise PricingError("prices: at least one meter must be priced")
        prices = {m: check_price(m, v) for m, v in self.prices.items()}
        setattr_(self, "prices", prices)
        setattr_(self, "tiers", _check_tiers(self.tiers, prices))
        self._check_window()
        self._check_provenance()
        base = {m: _pico_per_unit(m, p) for m, p in prices.items()}
        tiers, current = [], dict(base)
        for tier in self.tiers:
            current = current | {m: _pico_per_unit(m, p) for m, p in tier.prices.items()}
            tiers.append((tier.above_input_tokens, current))
        setattr_(self, "pico_prices", base)
        setattr_(self, "pico_tiers", tuple(reversed(tiers)))  # highest threshold first
        if not self.id:
            scope = (self.kind, provider, *tier_scope(self.service_tier))
            setattr_(self, "id", default_entry_id(
                scope, self.match_kind, pattern, self.effective_from))
        if len(self.id) > _MAX_ID:
            raise PricingError(f"id: at most {_MAX_ID} characters, got {len(self.id)}")

    def _check_window(self) -> None:
        start = parse_instant(self.effective_from, "effective_from")
        object.__setattr__(self, "effective_from", start)
        if self.effective_to is not None:
            end = parse_instant(self.effective_to, "effective_to")
            if end <= start:
                raise PricingError(
                    f"effective_to: {instant_str(end)} is not after effective_from "
                    f"{instant_str(start)}"
                )
            object.__setattr__(self, "effective_to", end)

    def _check_provenance(self) -> None:
        for name, limit in (("source_url", 2000), ("checked_by", 200), ("origin", 500)):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip() or len(value) > limit:
                raise PricingError(f"{name}: expected 1 to {limit} characters, got {value!r}")
        if self.source_id is not None and not 0 < len(self.source_id) <= 200:
            raise PricingError(f"source_id: expected 1 to 200 characters, got {self.source_id!r}")
        if not isinstance(self.checked_at, date) or isinstance(self.checked_at, datetime):
            raise PricingError(f"checked_at: expected a date, got {self.checked_at!r}")

    # -- questions ---------------------------------------------------------------------

    def matches(self, model: str) -> bool:
        """Whether this entry's match selects `model` (compared in lower case)."""
        name = model.lower()
        if self.matcher is None:
            return name == self.model_match
        if self.match_kind == "glob":
            return self.matcher.match(name) is not None
        return self.matcher.search(name) is not None

    def tier_prices(self, input_tokens: int) -> tuple[int | None, dict[str, int]]:
        """(threshold, pico prices) for an event with ``input_tokens`` of input: the highest
        tier whose threshold it exceeds, else (None, the base prices)."""
        for threshold, prices in self.pico_tiers:
            if input_tokens > threshold:
                return threshold, prices
        return None, self.pico_prices

    def in_effect(self, at: datetime) -> bool:
        return self.effective_from <= at and (self.effective_to is None or at < self.effective_to)

    def overlaps(self, other: PriceEntry) -> bool:
        """Same provider, match, kind and service tier, and windows that share an instant."""
        return (
            (self.provider, self.match_kind, self.model_match, self.kind, self.service_tier)
            == (other.provider, other.match_kind, other.model_match, other.kind,
                other.service_tier)
            and (other.effective_to is None or self.effective_from < other.effective_to)
            and (self.effective_to is None or other.effective_from < self.effective_to)
        )

    def record(self) -> dict[str, Any]:
        """JSON-able form: decimals as canonical text, dates in ISO; what audit rows hold."""
        return {
            "id": self.id,
            "provider": self.provider,
            "model_match": self.model_match,
            "match_kind": self.match_kind,
            "kind": self.kind,
            "currency": self.currency,
            "prices": _prices_record(self.prices),
            "tiers": _tiers_record(self.tiers),
            "effective_from": self.effective_from.isoformat(),
            "effective_to": None if self.effective_to is None else self.effective_to.isoformat(),
            "service_tier": self.service_tier,
            "source_url": self.source_url,
            "source_id": self.source_id,
            "checked_at": self.checked_at.isoformat(),
            "checked_by": self.checked_by,
            "origin": self.origin,
        }


def _check_tier(value: object) -> str | None:
    """The entry's service tier: None (standard) or a lower-case name; ``default`` and
    ``standard`` name the standard tier, so they are None too."""
    if value is None:
        return None
    if isinstance(value, str) and len(value.strip()) > 50:
        raise PricingError(f"service_tier: at most 50 characters, got {len(value.strip())}")
    tier = service_tier_of(value)
    if tier is None and not (isinstance(value, str) and value.strip()):
        raise PricingError(f"service_tier: expected a tier name like batch, got {value!r}")
    if tier is not None and not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", tier):
        raise PricingError(
            f"service_tier: expected letters, digits, '_', '-' or '.', got {value!r}")
    return tier


def _check_tiers(tiers: tuple[Tier, ...], base: dict[str, Decimal]) -> tuple[Tier, ...]:
    checked: list[Tier] = []
    for i, tier in enumerate(tiers):
        name = f"tiers[{i}]"
        threshold = tier.above_input_tokens
        if not isinstance(threshold, int) or isinstance(threshold, bool) or threshold < 0:
            raise PricingError(
                f"{name}.above_input_tokens: expected a whole number >= 0, got {threshold!r}"
            )
        if checked and threshold <= checked[-1].above_input_tokens:
            raise PricingError(
                f"{name}.above_input_tokens: tiers must be in increasing order of threshold"
            )
        if not tier.prices:
            raise PricingError(f"{name}.prices: a tier must price at least one meter")
        for meter in tier.prices:
            if meter in METERS and meter not in base:
                raise PricingError(
                    f"{name}.prices.{meter}: a tiered meter needs a base price in prices"
                )
        prices = {m: check_price(m, v, f"{name}.prices.{m}") for m, v in tier.prices.items()}
        checked.append(Tier(threshold, prices))
    return tuple(checked)


def _prices_record(prices: Mapping[str, Decimal]) -> dict[str, str]:
    return {m: _dec_str(prices[m]) for m in METERS if m in prices}


def _tiers_record(tiers: tuple[Tier, ...]) -> list[dict[str, Any]]:
    return [
        {"above_input_tokens": t.above_input_tokens, "prices": _prices_record(t.prices)}
        for t in tiers
    ]


def tier_scope(service_tier: str | None) -> tuple[str, ...]:
    """What a tier adds to an entry id's scope: nothing for the standard tier, so the ids of
    standard entries stay as they were before tiers existed."""
    return () if service_tier is None else (f"tier={service_tier}",)


def default_entry_id(
    scope: Sequence[str], match_kind: str, model_match: str, effective_from: datetime
) -> str:
    """Stable id from what makes an entry unique, so re-importing the same data finds it."""
    match = model_match if match_kind == "exact" else f"{match_kind}:{model_match}"
    start = instant_str(effective_from)
    text = f"{':'.join(scope)}:{match}@{start}"
    if len(text) <= _MAX_ID:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return f"{':'.join(scope)}:{digest}@{start}"
