"""Price entries in the ledger: reading them into a catalog, adding them with an audit row
each in the caller's transaction (by the rule of ``spendtrail.pricing.catalog``), and the
models the ledger saw without a price."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal

import sqlalchemy as sa

from spendtrail.access.scope import EVERYONE, AccessScope
from spendtrail.ledger.audit import record_change
from spendtrail.ledger.db import as_utc
from spendtrail.ledger.schema import price_entries, rollups_daily
from spendtrail.ledger.scoping import scope_condition
from spendtrail.periods import Period
from spendtrail.pricing.catalog import Catalog, match_key, merge_entry
from spendtrail.pricing.model import PriceEntry, PricingError, Tier


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


def load_catalog(conn: sa.Connection) -> Catalog:
    """Every stored entry, ready for lookups."""
    return Catalog(load_entries(conn))


# Columns that hold an entry's field as it is; prices, tiers and times need converting.
_PLAIN = ("id", "provider", "model_match", "match_kind", "kind", "currency", "source_url",
          "source_id", "checked_by", "origin", "service_tier")


def _from_row(row: sa.RowMapping) -> PriceEntry:
    tiers = json.loads(row["tiers"]) if row["tiers"] else []
    return PriceEntry(
        **{k: row[k] for k in _PLAIN},
        prices={m: Decimal(v) for m, v in json.loads(row["prices"]).items()},
        tiers=tuple(
            Tier(t["above_input_tokens"], {m: Decimal(v) for m, v in t["prices"].items()})
            for t in tiers
        ),
        effective_from=as_utc(row["effective_from"]),
        effective_to=as_utc(row["effective_to"]),
        checked_at=row["checked_at"],
    )


def _to_row(entry: PriceEntry, created_at: datetime) -> dict:
    record = entry.record()
    return {
        **{k: record[k] for k in _PLAIN},
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
        groups.setdefault(match_key(entry), []).append(entry)
    now = datetime.now(UTC)
    # Updating stored entries first lets one batch close an old price and add its successor.
    for entry in sorted(entries, key=lambda e: e.id not in stored):
        before = stored.get(entry.id)
        try:
            merged = merge_entry(entry, before, groups.get(match_key(entry), ()))
        except PricingError as exc:
            if not skip_conflicts:
                raise
            result.rejected.append(Rejected(entry, str(exc)))
            continue
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
            groups[match_key(before)].remove(before)
        record_change(conn, actor=actor, action=action, object_type="price", object_id=entry.id,
                      before=None if before is None else before.record(),
                      after=merged.record(), reason=reason)
        listed.append(entry.id)
        stored[entry.id] = merged
        groups.setdefault(match_key(merged), []).append(merged)
    return result


@dataclass(frozen=True, slots=True)
class UnpricedModel:
    provider: str
    model: str  # "" when the events named no model
    unpriced_events: int  # events priced "unpriced" or "incomplete"
    first_day: date
    last_day: date


def unpriced_models(conn: sa.Connection, period: Period | None = None, *,
                    scope: AccessScope = EVERYONE) -> list[UnpricedModel]:
    """(provider, model) pairs with unpriced or incomplete events in ``scope``, from the
    daily rollups."""
    r = rollups_daily.c
    query = (
        sa.select(r.provider, r.model, sa.func.sum(r.unpriced_events), sa.func.min(r.day),
                  sa.func.max(r.day))
        .where(r.unpriced_events > 0, scope_condition(scope, rollups_daily))
        .group_by(r.provider, r.model)
    )
    if period is not None:
        query = query.where(r.day >= period.start, r.day < period.end)
    rows = [UnpricedModel(p, m, int(n), first, last)
            for p, m, n, first, last in conn.execute(query)]
    return sorted(rows, key=lambda u: (-u.unpriced_events, u.provider, u.model))
