"""The price catalog: entries looked up in memory, and the rule for adding one to those stored.

Lookup prices an event at its own timestamp. Among the entries of the event's provider whose
match selects the model and whose window [effective_from, effective_to) contains the instant:
contracted beats list, exact beats pattern (glob or regex), newer effective_from beats older;
then, so the choice is always the same, the longer pattern and the smaller id win.

Service tier is a price dimension: an event billed at a tier (``batch``, ``flex``...) takes
an entry of that tier when one selects it, by the same order; else the standard entry that
would price a standard call (which ``price_usage`` flags), so a tier nobody priced is shown
at the standard price rather than left unpriced. A standard event never takes a tier entry.

Entries are never edited in place. Adding an entry whose id already exists is a no-op when it
is identical, and is allowed when the only change closes an open window (sets effective_to),
which is how a price change is recorded: close the old entry, add the new one. Storing them is
``spendtrail.ledger.prices``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import datetime

from spendtrail.pricing.model import PriceEntry, PricingError, instant_str


class Catalog:
    """All price entries, held in memory; matching is cached per (provider, model)."""

    def __init__(self, entries: Iterable[PriceEntry] = ()) -> None:
        self.entries: tuple[PriceEntry, ...] = tuple(entries)
        self._exact: dict[tuple[str, str], list[PriceEntry]] = {}
        self._patterns: dict[str, list[PriceEntry]] = {}
        for entry in self.entries:
            if entry.match_kind == "exact":
                self._exact.setdefault((entry.provider, entry.model_match), []).append(entry)
            else:
                self._patterns.setdefault(entry.provider, []).append(entry)
        self._candidates: dict[tuple[str, str], tuple[PriceEntry, ...]] = {}

    def candidates(self, provider: str, model: str) -> tuple[PriceEntry, ...]:
        """Every entry whose match selects the model, best first, whatever its window."""
        key = (provider, model)
        found = self._candidates.get(key)
        if found is None:
            p, m = provider.lower(), model.lower()
            matching = [*self._exact.get((p, m), ()),
                        *(e for e in self._patterns.get(p, ()) if e.matches(m))]
            found = self._candidates[key] = tuple(sorted(matching, key=_precedence))
        return found

    def lookup(
        self, provider: str, model: str, at: datetime, service_tier: str | None = None
    ) -> PriceEntry | None:
        """The entry that prices `model` from `provider` at instant `at` for a call billed at
        `service_tier` (None: standard), or None (unpriced)."""
        if at.tzinfo is None:
            raise PricingError(f"lookup time {at.isoformat()} must carry a UTC offset")
        candidates = self.candidates(provider, model)
        for tier in dict.fromkeys((service_tier, None)):
            for entry in candidates:
                if entry.service_tier == tier and entry.effective_from <= at and (
                        entry.effective_to is None or at < entry.effective_to):
                    return entry
        return None

    def select(
        self, *, provider: str | None = None, model: str | None = None, at: datetime | None = None
    ) -> list[PriceEntry]:
        """Entries for listing: by provider, those whose match selects `model`, in effect `at`."""
        chosen = [
            e for e in self.entries
            if (provider is None or e.provider == provider.lower())
            and (model is None or e.matches(model))
            and (at is None or e.in_effect(at))
        ]
        return sorted(chosen, key=lambda e: (e.provider, e.model_match, e.kind,
                                             e.service_tier or "", e.effective_from))


def _precedence(entry: PriceEntry) -> tuple:
    return (
        entry.kind != "contracted",
        entry.match_kind != "exact",
        -entry.effective_from.timestamp(),
        -len(entry.model_match),
        entry.id,
    )


# -- adding to the stored entries -------------------------------------------------------

# What a stored entry may still gain: an end to an open window, a newer check. The origin
# stays that of the first add. Anything else is a different price and needs a new entry.
_PROVENANCE = ("checked_at", "checked_by")
_MUTABLE = ("effective_to", "origin", *_PROVENANCE)


def match_key(entry: PriceEntry) -> tuple[str, str, str, str, str | None]:
    """Entries with the same key must not overlap in time: a lookup would be ambiguous."""
    return (entry.provider, entry.match_kind, entry.model_match, entry.kind, entry.service_tier)


def merge_entry(
    entry: PriceEntry, existing: PriceEntry | None, same_key: Iterable[PriceEntry]
) -> PriceEntry:
    """The entry to store when adding `entry`: `existing` (the stored entry with its id, if
    any) itself when nothing changes, else the new state. `same_key` are the stored entries
    with its match_key.

    Raises PricingError on a conflict."""
    if existing is None:
        for other in same_key:
            if entry.overlaps(other):
                raise PricingError(
                    f"price entry {entry.id} ({_window(entry)}) overlaps {other.id} "
                    f"({_window(other)}): same provider, model match, kind and service tier, "
                    "so a lookup "
                    "would be ambiguous"
                )
        return entry
    old, new = existing.record(), entry.record()
    fixed_differs = any(old[k] != new[k] for k in old if k not in _MUTABLE)
    closes = existing.effective_to is None and entry.effective_to is not None
    if fixed_differs or (existing.effective_to != entry.effective_to and not closes):
        raise PricingError(
            f"price entry {entry.id} already exists with other prices or window; entries are "
            "not edited in place: close its window (effective_to) and add a new entry"
        )
    changes: dict = {"effective_to": entry.effective_to} if closes else {}
    if entry.checked_at > existing.checked_at:
        changes |= {k: getattr(entry, k) for k in _PROVENANCE}
    return dataclasses.replace(existing, **changes) if changes else existing


def _window(entry: PriceEntry) -> str:
    end = "open" if entry.effective_to is None else instant_str(entry.effective_to)
    return f"{instant_str(entry.effective_from)} to {end}"
