"""The price catalog: entries stored in ``price_entries``, looked up in memory.

Lookup prices an event at its own timestamp. Among the entries of the event's provider whose
match selects the model and whose window [effective_from, effective_to) contains the instant:
contracted beats list, exact beats pattern (glob or regex), newer effective_from beats older;
then, so the choice is always the same, the longer pattern and the smaller id win.

Entries are never edited in place. Adding an entry whose id already exists is a no-op when it
is identical, and is allowed when the only change closes an open window (sets effective_to),
which is how a price change is recorded: close the old entry, add the new one. Every change
writes an audit row in the caller's transaction.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

import sqlalchemy as sa

from spendtrail.ledger.audit import record_change
from spendtrail.ledger.schema import price_entries
from spendtrail.pricing.model import PriceEntry, PricingError, Tier, instant_str


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

    @classmethod
    def load(cls, conn: sa.Connection) -> Catalog:
        return cls(load_entries(conn))

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

    def lookup(self, provider: str, model: str, at: datetime) -> PriceEntry | None:
        """The entry that prices `model` from `provider` at instant `at`, or None (unpriced)."""
        if at.tzinfo is None:
            raise PricingError(f"lookup time {at.isoformat()} must carry a UTC offset")
        for entry in self.candidates(provider, model):
            if entry.effective_from <= at and (entry.effective_to is None
                                               or at < entry.effective_to):
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
        return sorted(chosen, key=lambda e: (e.provider, e.model_match, e.kind, e.effective_from))


def _precedence(entry: PriceEntry) -> tuple:
    return (
        entry.kind != "contracted",
        entry.match_kind != "exact",
        -entry.effective_from.timestamp(),
        -len(entry.model_match),
        entry.id,
    )


# -- storage ----------------------------------------------------------------------------


def load_entries(
    conn: sa.Connection,
    *,
    providers: Iterable[str] | None = None,
    ids: Iterable[str] | None = None,
) -> list[PriceEntry]:
    query = sa.select(price_entries)
    if ids is not None:
        query = query.where(price_entries.c.id.in_(list(ids)))
    if providers is not None:
        query = query.where(price_entries.c.provider.in_(list(providers)))
    return [_from_row(row) for row in conn.execute(query.order_by(price_entries.c.id)).mappings()]


def _utc(value: datetime | None) -> datetime | None:
    # SQLite hands timestamps back without an offset; they were written in UTC.
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _from_row(row: sa.RowMapping) -> PriceEntry:
    tiers = json.loads(row["tiers"]) if row["tiers"] else []
    return PriceEntry(
        id=row["id"],
        provider=row["provider"],
        model_match=row["model_match"],
        match_kind=row["match_kind"],
        kind=row["kind"],
        currency=row["currency"],
        prices={m: Decimal(v) for m, v in json.loads(row["prices"]).items()},
        tiers=tuple(
            Tier(t["above_input_tokens"], {m: Decimal(v) for m, v in t["prices"].items()})
            for t in tiers
        ),
        effective_from=_utc(row["effective_from"]),
        effective_to=_utc(row["effective_to"]),
        source_url=row["source_url"],
        source_id=row["source_id"],
        checked_at=row["checked_at"],
        checked_by=row["checked_by"],
        origin=row["origin"],
    )


def _to_row(entry: PriceEntry, created_at: datetime) -> dict:
    record = entry.record()
    return {
        **{k: record[k] for k in ("id", "provider", "model_match", "match_kind", "kind",
                                  "currency", "source_url", "source_id", "checked_by", "origin")},
        "prices": json.dumps(record["prices"]),
        "tiers": json.dumps(record["tiers"]) if entry.tiers else None,
        "effective_from": entry.effective_from,
        "effective_to": entry.effective_to,
        "checked_at": entry.checked_at,
        "created_at": created_at,
    }


@dataclass(frozen=True, slots=True)
class Rejected:
    entry: PriceEntry
    reason: str


@dataclass
class AddResult:
    added: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)  # already stored, same prices
    closed: list[str] = field(default_factory=list)  # open windows given an effective_to
    rechecked: list[str] = field(default_factory=list)  # same prices, newer checked_at
    rejected: list[Rejected] = field(default_factory=list)


# What a stored entry may still gain: an end to an open window, a newer check. The origin
# stays that of the first add. Anything else is a different price and needs a new entry.
_PROVENANCE = ("checked_at", "checked_by")
_MUTABLE = ("effective_to", "origin", *_PROVENANCE)


def add_entries(
    conn: sa.Connection,
    entries: Sequence[PriceEntry],
    *,
    actor: str,
    reason: str = "",
    skip_conflicts: bool = False,
) -> AddResult:
    """Store entries with an audit row each, in the caller's transaction.

    An entry whose id is stored already is unchanged, closes the stored window
    (``price.close``) or records a newer check (``price.recheck``). A conflict (same id with
    other prices or window, or a window overlapping an entry with the same provider, match
    and kind) raises PricingError, unless `skip_conflicts`, when the entry is left out and
    listed in ``rejected`` with the reason.
    """
    result = AddResult()
    stored = {e.id: e for e in load_entries(conn, providers={e.provider for e in entries})}
    # An explicit id may already name an entry of another provider.
    stored |= {e.id: e for e in load_entries(conn, ids={e.id for e in entries} - stored.keys())}
    groups: dict[tuple, list[PriceEntry]] = {}
    for entry in stored.values():
        groups.setdefault(_match_key(entry), []).append(entry)
    now = datetime.now(UTC)
    # Updating stored entries first lets one batch close an old price and add its successor.
    for entry in sorted(entries, key=lambda e: e.id not in stored):
        try:
            merged = _merge(entry, stored, groups)
        except PricingError as exc:
            if not skip_conflicts:
                raise
            result.rejected.append(Rejected(entry, str(exc)))
            continue
        before = stored.get(entry.id)
        if merged is before:
            result.unchanged.append(entry.id)
            continue
        if before is None:
            conn.execute(price_entries.insert().values(**_to_row(merged, now)))
            action, listed = "price.add", result.added
        else:
            conn.execute(price_entries.update().where(price_entries.c.id == entry.id).values(
                effective_to=merged.effective_to, checked_at=merged.checked_at,
                checked_by=merged.checked_by))
            closing = merged.effective_to != before.effective_to
            action = "price.close" if closing else "price.recheck"
            listed = result.closed if closing else result.rechecked
            groups[_match_key(before)].remove(before)
        record_change(conn, actor=actor, action=action, object_type="price", object_id=entry.id,
                      before=None if before is None else before.record(),
                      after=merged.record(), reason=reason)
        listed.append(entry.id)
        stored[entry.id] = merged
        groups.setdefault(_match_key(merged), []).append(merged)
    return result


def _match_key(entry: PriceEntry) -> tuple[str, str, str, str]:
    return (entry.provider, entry.match_kind, entry.model_match, entry.kind)


def _merge(
    entry: PriceEntry, stored: dict[str, PriceEntry], groups: dict[tuple, list[PriceEntry]]
) -> PriceEntry:
    """The entry to store: the stored one itself when nothing changes, else the new state.

    Raises PricingError on a conflict."""
    existing = stored.get(entry.id)
    if existing is None:
        for other in groups.get(_match_key(entry), ()):
            if entry.overlaps(other):
                raise PricingError(
                    f"price entry {entry.id} ({_window(entry)}) overlaps {other.id} "
                    f"({_window(other)}): same provider, model match and kind, so a lookup "
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
