"""Reference (list) prices from the installed genai-prices package.

Each model of each requested provider becomes one entry per dated price and per match clause:

- windows: ``ConditionalPrice`` start dates become [effective_from, effective_to) windows,
  chosen with genai-prices' own rule (the last active price wins, else the first); an
  unconstrained price starts at 1970-01-01. A model with a time-of-day price is not imported,
  since no entry can express a price that changes with the hour.
- matches: ``equals`` -> exact, ``starts_with``/``ends_with``/``contains`` -> glob, ``regex``
  -> regex (both search the lower-cased name), ``and`` -> one regex of lookaheads, ``or`` ->
  one entry per alternative. genai-prices takes the first model that matches; a clause already
  claimed by an earlier model of the same provider is left out and reported as shadowed.
- prices: the keys that map onto spendtrail meters are imported (``requests_kcount`` / 1000
  per request, ``audio_hours`` / 3600 per second); every other key and any price finer than a
  pico-unit is reported, never dropped quietly.
- service tiers: a price variant selected by ``processing: batch`` or ``service_tier: X``
  becomes entries of that tier, with genai-prices' own merge (the variant's keys over the
  standard price in effect) in each window where the variant is active. Variants selected by
  anything else (a route, a search type...) are reported.

Provenance: source_url is the provider's pricing page in the data; checked_at the data's own
date (``data_date``): genai-prices keeps its per-model ``prices_checked`` out of the package
and the files carry the install time, so the newest price change the data records that had
taken effect on the day given (the ledger gives the first import of the version) is the best
date the data gives of when it was written; checked_by and origin ``genai-prices <version>``.
The plan touches no ledger; ``spendtrail.ledger.genai_prices`` stores it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal

import genai_prices
from genai_prices import data as genai_data
from genai_prices import types as gp

from spendtrail.pricing.model import (
    EPOCH,
    PriceEntry,
    PricingError,
    Tier,
    check_price,
    default_entry_id,
    service_tier_of,
    tier_scope,
)

ORIGIN = f"genai-prices {genai_prices.__version__}"
REPOSITORY = "https://github.com/pydantic/genai-prices"

_TOKEN_KEYS = {
    "input_mtok": "input_tokens",
    "cache_read_mtok": "cached_input_tokens",
    "cache_write_mtok": "cache_write_tokens",
    "output_mtok": "output_tokens",
    "output_reasoning_mtok": "reasoning_tokens",
    "input_audio_mtok": "input_audio_tokens",
    "output_audio_mtok": "output_audio_tokens",
    "cache_write_1h_mtok": "cache_write_1h_tokens",
    "input_image_mtok": "input_image_tokens",
    "output_image_mtok": "output_image_tokens",
    "input_mchars": "input_characters",
}
_UNIT_KEYS = {"requests_kcount": ("requests", 1000), "audio_hours": ("seconds", 3600)}
# genai-prices adjusts usage in code for these before pricing (ModelInfo.calc_price).
_USAGE_ADJUSTED = {
    ("groq", "whisper-large-v3"): "genai-prices bills at least 10 seconds per request",
    ("groq", "whisper-large-v3-turbo"): "genai-prices bills at least 10 seconds per request",
}


@dataclass(frozen=True, slots=True)
class Skipped:
    provider: str
    model: str
    reason: str

    def __str__(self) -> str:
        return f"{self.provider} {self.model}: {self.reason}"


@dataclass
class GenaiPlan:
    checked_at: date
    entries: list[PriceEntry] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def available_providers() -> list[str]:
    return [p.id for p in genai_data.providers]


def data_date(as_of: date) -> date:
    """The installed data's date: its newest price change in effect on `as_of`. Changes the
    data announces for later days do not count: it was written before them. 1970-01-01 for
    data with no dates."""
    days = [EPOCH.date()]
    for provider in genai_data.providers:
        for model in provider.models:
            constraints = [] if isinstance(model.prices, gp.ModelPrice) else [
                c.constraint for c in model.prices]
            constraints += [v.constraint for v in model.price_variants or ()]
            days += [c.start_date for c in constraints
                     if isinstance(c, gp.StartDateConstraint) and c.start_date <= as_of]
    return max(days)


def plan_genai_import(provider_ids: Sequence[str], as_of: date) -> GenaiPlan:
    """Translate the requested providers' data into entries, without touching the ledger.
    `as_of` is the import's day, which dates the data (``data_date``)."""
    by_id = {p.id: p for p in genai_data.providers}
    unknown = [p for p in provider_ids if p.lower() not in by_id]
    if unknown:
        raise PricingError(
            f"--provider: genai-prices {genai_prices.__version__} has no provider "
            f"{unknown[0]!r}; it has: {', '.join(sorted(by_id))}"
        )
    plan = GenaiPlan(data_date(as_of))
    for provider_id in dict.fromkeys(p.lower() for p in provider_ids):
        provider = by_id[provider_id]
        if provider.fallback_model_providers:
            plan.skipped.append(Skipped(provider.id, "*", (
                "genai-prices falls back to the models of "
                f"{', '.join(provider.fallback_model_providers)} for names it does not list; "
                "spendtrail does not, so those names stay unpriced for this provider")))
        claimed: set[tuple[str, str]] = set()
        for model in provider.models:
            _plan_model(plan, provider, model, claimed)
    return plan


def _plan_model(
    plan: GenaiPlan,
    provider: gp.Provider,
    model: gp.ModelInfo,
    claimed: set[tuple[str, str]],
) -> None:
    def skip(reason: str) -> None:
        plan.skipped.append(Skipped(provider.id, model.id, reason))

    matches = []
    for match_kind, pattern in dict.fromkeys(_translate_match(model.match)):
        # genai-prices picks the first model that matches, so an equals clause another model
        # already matches, or a pattern an earlier model already has, never selects this one.
        winner = _first_match(provider, pattern) if match_kind == "exact" else None
        if (match_kind, pattern) in claimed or (winner is not None and winner is not model):
            skip(f"{match_kind} match {pattern!r} is shadowed by an earlier model in "
                 "genai-prices, which never prices it as this model")
            continue
        claimed.add((match_kind, pattern))
        matches.append((match_kind, pattern))
    if not matches:
        return
    if (provider.id, model.id) in _USAGE_ADJUSTED:
        skip(f"{_USAGE_ADJUSTED[provider.id, model.id]}; spendtrail prices the usage as reported")
    if not model.prices:
        skip("no prices in genai-prices")
        return
    source_url = (provider.pricing_urls or [f"{REPOSITORY}/tree/main/prices/providers"])[0]
    dropped: set[str] = set()
    for tier, context in [(None, None), *_tier_contexts(model, skip)]:
        what = "prices" if tier is None else f"{tier} prices"
        try:
            windows = _windows(model, context)
        except _NotExact as exc:
            skip(f"{what} not imported: {exc}")
            continue
        for start, end, model_price in windows:
            try:
                prices, tiers, unmapped = _translate_prices(model_price)
            except _NotExact as exc:
                skip(f"{what} from {start.date()} not imported: {exc}")
                continue
            dropped |= unmapped
            if not prices:
                reason = (f"none of its price keys ({', '.join(sorted(unmapped))}) has a "
                          "spendtrail meter" if unmapped else "genai-prices lists no price "
                          "(free there); add a contracted zero price if it is free for you")
                skip(f"{what} from {start.date()} not imported: {reason}")
                continue
            scope = ("genai-prices", provider.id, model.id, *tier_scope(tier))
            for match_kind, pattern in matches:
                try:
                    plan.entries.append(PriceEntry(
                        id=default_entry_id(scope, match_kind, pattern, start),
                        provider=provider.id, model_match=pattern, match_kind=match_kind,
                        kind="list", currency="USD", prices=prices, tiers=tiers,
                        effective_from=start, effective_to=end, service_tier=tier,
                        source_url=source_url, checked_at=plan.checked_at, checked_by=ORIGIN,
                        origin=ORIGIN,
                    ))
                except PricingError as exc:
                    skip(f"{match_kind} match {pattern!r} not imported: {exc}")
    if dropped:
        skip(f"price keys with no spendtrail meter not imported: {', '.join(sorted(dropped))}")


def _tier_contexts(
    model: gp.ModelInfo, skip: Callable[[str], None]
) -> list[tuple[str, dict[str, str]]]:
    """The service tiers the model's price variants select, each with its genai-prices
    request context; variants selected by anything else are reported."""
    tiers: dict[str, dict[str, str]] = {}
    others: set[str] = set()
    for variant in model.price_variants or ():
        when = dict(variant.when)
        if when == {"processing": "batch"}:
            tier = "batch"
        elif set(when) == {"service_tier"}:
            tier = service_tier_of(when["service_tier"])
            if tier is None:
                if any(v is not None for v in variant.prices.__dict__.values()):
                    others.add(f"service_tier={when['service_tier']}")
                continue  # the standard tier, priced by the standard prices
        else:
            others.add(", ".join(f"{k}={v}" for k, v in sorted(when.items())))
            continue
        tiers.setdefault(tier, when)
    if others:
        skip(f"price variants not imported ({'; '.join(sorted(others))}): entries are chosen "
             "by provider, model, service tier and time only")
    return sorted(tiers.items())


def _first_match(provider: gp.Provider, name: str) -> gp.ModelInfo | None:
    return next((m for m in provider.models if m.is_match(name)), None)


class _NotExact(Exception):
    """Data that no entry can express exactly; the message says why."""


def _windows(
    model: gp.ModelInfo, context: dict[str, str] | None = None
) -> list[tuple[datetime, datetime | None, gp.ModelPrice]]:
    """The model's prices as adjacent windows; with a request `context` (a service tier),
    only the windows where one of its variants is active, priced as genai-prices merges
    them."""
    if isinstance(model.prices, gp.ModelPrice) and context is None:
        return [(EPOCH, None, model.prices)]
    constraints = [] if isinstance(model.prices, gp.ModelPrice) else [
        c.constraint for c in model.prices]
    variants = [v for v in model.price_variants or () if context and v.when == context]
    constraints += [v.constraint for v in variants]
    if any(isinstance(c, gp.TimeOfDateConstraint) for c in constraints):
        raise _NotExact("its prices change with the time of day (off-peak pricing), which a "
                        "price entry cannot express")
    starts = sorted({c.start_date for c in constraints if isinstance(c, gp.StartDateConstraint)})
    bounds = [EPOCH, *(datetime.combine(d, time(), UTC) for d in starts if d > EPOCH.date())]
    windows: list[tuple[datetime, datetime | None, gp.ModelPrice | None]] = []
    for i, start in enumerate(bounds):
        end = bounds[i + 1] if i + 1 < len(bounds) else None
        if context is None:
            chosen = model.get_prices(start)  # genai-prices' own choice for this window
        elif any(v.constraint is None or v.constraint.active(start) for v in variants):
            chosen = model.get_prices(start, context)
        else:
            chosen = None  # no variant yet: the standard entry prices this tier, flagged
        previous = windows[-1][2] if windows else None
        if windows and (previous is chosen or (
                context is not None and chosen is not None and previous == chosen)):
            windows[-1] = (windows[-1][0], end, chosen)
        else:
            windows.append((start, end, chosen))
    return [(start, end, chosen) for start, end, chosen in windows if chosen is not None]


def _translate_prices(
    model_price: gp.ModelPrice,
) -> tuple[dict[str, Decimal], tuple[Tier, ...], set[str]]:
    prices: dict[str, Decimal] = {}
    tiered: dict[str, list[tuple[int, Decimal]]] = {}
    unmapped: set[str] = set()
    for key, value in model_price.__dict__.items():
        if value is None or key.startswith("_"):
            continue
        if key in _TOKEN_KEYS:
            meter, per = _TOKEN_KEYS[key], 1
        elif key in _UNIT_KEYS:
            meter, per = _UNIT_KEYS[key]
        else:
            unmapped.add(key)
            continue
        if isinstance(value, gp.TieredPrices):
            prices[meter] = _per_unit(meter, key, value.base, per)
            tiered[meter] = [(t.start, _per_unit(meter, key, t.price, per)) for t in value.tiers]
        else:
            prices[meter] = _per_unit(meter, key, value, per)
    return prices, _merge_tiers(tiered), unmapped


def _per_unit(meter: str, key: str, price: Decimal, per: int) -> Decimal:
    """A genai-prices price per `per` units -> the price per unit, only if exact."""
    if per != 1:
        pico = price.scaleb(12)
        if pico != pico.to_integral_value() or int(pico) % per:
            raise _NotExact(f"{key} {price} per {per} is not a whole number of pico-units per "
                            f"{meter.rstrip('s')}")
        price = Decimal(int(pico) // per).scaleb(-12)
    try:
        return check_price(meter, price, f"{key} ({meter})")
    except PricingError as exc:
        raise _NotExact(str(exc)) from None


def _merge_tiers(tiered: dict[str, list[tuple[int, Decimal]]]) -> tuple[Tier, ...]:
    """Per-key tiers -> tiers listing, at each threshold, the meters that change there."""
    thresholds = sorted({start for tiers in tiered.values() for start, _ in tiers})
    return tuple(
        Tier(threshold, {meter: price for meter, tiers in tiered.items()
                         for start, price in tiers if start == threshold})
        for threshold in thresholds
    )


def _translate_match(clause: object) -> list[tuple[str, str]]:
    """A genai-prices match clause -> (match_kind, pattern) alternatives."""
    if isinstance(clause, gp.ClauseOr):
        return [alt for sub in clause.or_ for alt in _translate_match(sub)]
    if isinstance(clause, gp.ClauseEquals):
        return [("exact", clause.equals.lower())]
    if isinstance(clause, gp.ClauseStartsWith):
        return [("glob", _glob_literal(clause.starts_with) + "*")]
    if isinstance(clause, gp.ClauseEndsWith):
        return [("glob", "*" + _glob_literal(clause.ends_with))]
    if isinstance(clause, gp.ClauseContains):
        return [("glob", "*" + _glob_literal(clause.contains) + "*")]
    if isinstance(clause, gp.ClauseRegex):
        return [("regex", clause.regex)]
    if isinstance(clause, gp.ClauseAnd):
        return [("regex", "^" + "".join(f"(?={_from_start(c)})" for c in clause.and_))]
    raise PricingError(f"genai-prices match clause {clause!r} is not supported")


def _glob_literal(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text.lower())


def _from_start(clause: object) -> str:
    """A regex that, tried at position 0, matches exactly when the clause matches the name."""
    if isinstance(clause, gp.ClauseEquals):
        return re.escape(clause.equals.lower()) + r"\Z"
    if isinstance(clause, gp.ClauseStartsWith):
        return re.escape(clause.starts_with.lower())
    if isinstance(clause, gp.ClauseEndsWith):
        return r"(?s:.*)" + re.escape(clause.ends_with.lower()) + r"\Z"
    if isinstance(clause, gp.ClauseContains):
        return r"(?s:.*?)" + re.escape(clause.contains.lower())
    if isinstance(clause, gp.ClauseRegex):
        return rf"(?s:.*?)(?:{clause.regex})"
    if isinstance(clause, gp.ClauseOr):
        return "(?:" + "|".join(_from_start(c) for c in clause.or_) + ")"
    if isinstance(clause, gp.ClauseAnd):
        return "".join(f"(?={_from_start(c)})" for c in clause.and_)
    raise PricingError(f"genai-prices match clause {clause!r} is not supported")
