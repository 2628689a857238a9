"""Counters of spend settled by gateways, per budget and period: in memory for one process,
in the ledger database or in Redis for gateways that must hold a budget together.

A counter only ever grows, and every increment is one atomic operation in its store, so a
settle that crosses a limit is seen by every admission that reads the counter afterwards.
Each settlement is also kept by event id until the period is over: a repeated settle of the
same event counts once (SQL and Redis), and `in_ledger` can tell how much of a counter the
ledger's rollups already hold, so the guard never counts an event twice (docs/budgets.md).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from spendtrail.budgets.spend import ingested
from spendtrail.ledger.schema import budget_counters, budget_settlements, events

if TYPE_CHECKING:
    import redis

CounterKey = tuple[str, date]  # Budget.counter_id, period start


@dataclass(frozen=True, slots=True)
class Charge:
    key: CounterKey
    amount: int  # pico-units or tokens, in the budget's unit
    expires_at: datetime  # when the store may forget the counter (after the period)


class Counters(Protocol):
    # True when reading a counter is a round trip to a store other processes write to.
    shared: bool

    def add(self, event_id: str, charges: Sequence[Charge]) -> list[int]:
        """Add one event's charges; the counters' totals afterwards, one per charge."""
        ...

    def read(self, keys: Sequence[CounterKey]) -> list[int]:
        """Current totals, one per key (0 for a counter never charged)."""
        ...

    def in_ledger(self, conn: sa.Connection, keys: Sequence[CounterKey]) -> dict[CounterKey, int]:
        """How much of each counter comes from events the ledger already holds."""
        ...

    def prune(self, now: datetime, current: Sequence[CounterKey]) -> None:
        """Forget counters whose period is over (`current`: the periods in use now)."""
        ...


class _Tracker:
    """Per-process bookkeeping for `in_ledger`: settlements not yet seen in the ledger, and
    the sum of those that were. Events are never removed from the ledger within a period,
    so a settlement once confirmed stays confirmed and is never checked again."""

    def __init__(self) -> None:
        self.pending: dict[CounterKey, dict[str, int]] = {}
        self.confirmed: dict[CounterKey, int] = {}

    def note(self, key: CounterKey, event_id: str, amount: int) -> None:
        entries = self.pending.setdefault(key, {})
        entries[event_id] = entries.get(event_id, 0) + amount

    def waiting(self, keys: Sequence[CounterKey]) -> set[str]:
        return {event_id for key in keys for event_id in self.pending.get(key, ())}

    def confirm(self, found: set[str], keys: Sequence[CounterKey]) -> dict[CounterKey, int]:
        """Move the settlements of events found in the ledger to the confirmed sums."""
        for key in keys:
            entries = self.pending.get(key, {})
            for event_id in found.intersection(entries):
                self.confirmed[key] = self.confirmed.get(key, 0) + entries.pop(event_id)
        return {key: self.confirmed.get(key, 0) for key in keys}

    def forget(self, key: CounterKey) -> None:
        self.pending.pop(key, None)
        self.confirmed.pop(key, None)


class MemoryCounters:
    """One process: plain integers under a lock. Not idempotent on the event id (there is no
    network between the gateway and this store, so no settle is ever retried)."""

    shared = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._totals: dict[CounterKey, int] = {}
        self._expires: dict[CounterKey, datetime] = {}
        self._tracker = _Tracker()

    def add(self, event_id: str, charges: Sequence[Charge]) -> list[int]:
        with self._lock:
            totals = []
            for charge in charges:
                total = self._totals.get(charge.key, 0) + charge.amount
                self._totals[charge.key] = total
                self._expires[charge.key] = charge.expires_at
                self._tracker.note(charge.key, event_id, charge.amount)
                totals.append(total)
            return totals

    def read(self, keys: Sequence[CounterKey]) -> list[int]:
        totals = self._totals  # dict reads are atomic; no lock on the hot path
        return [totals.get(key, 0) for key in keys]

    def in_ledger(self, conn: sa.Connection, keys: Sequence[CounterKey]) -> dict[CounterKey, int]:
        with self._lock:
            waiting = self._tracker.waiting(keys)
        # The ledger query runs without the lock, so settles go on meanwhile.
        found = ingested(conn, waiting) if waiting else set()
        with self._lock:
            return self._tracker.confirm(found, keys)

    def prune(self, now: datetime, current: Sequence[CounterKey]) -> None:
        with self._lock:
            for key in [k for k, at in self._expires.items() if at <= now]:
                del self._totals[key], self._expires[key]
                self._tracker.forget(key)


class SqlCounters:
    """Counters in the ledger database (PostgreSQL for replicas; SQLite for processes on one
    machine). One transaction per settle; one SELECT per admission."""

    shared = True

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def add(self, event_id: str, charges: Sequence[Charge]) -> list[int]:
        # Sorted keys: concurrent settles lock counter rows in one order, so never deadlock.
        ordered = sorted(set(c.key for c in charges))
        rows = [
            {"counter_id": c.key[0], "period_start": c.key[1], "event_id": event_id,
             "amount": c.amount, "expires_at": c.expires_at}
            for c in sorted(charges, key=lambda c: c.key)
        ]
        with self.engine.begin() as conn:
            if self.engine.dialect.name == "postgresql":
                totals = self._add_postgresql(conn, rows)
            else:
                totals = self._add_sqlite(conn, rows)
            missing = [key for key in ordered if key not in totals]
            if missing:  # a repeated settle: nothing added, report the totals as they are
                totals.update(zip(missing, self._read(conn, missing), strict=True))
        return [totals[c.key] for c in charges]

    @staticmethod
    def _add_postgresql(conn: sa.Connection, rows: list[dict]) -> dict[CounterKey, int]:
        """One round trip: the settlement insert feeds the counter upsert, so only events
        not settled before are added."""
        s, c = budget_settlements.c, budget_counters.c
        settled = (
            postgresql.insert(budget_settlements)
            .values(rows)
            .on_conflict_do_nothing()
            .returning(s.counter_id, s.period_start, s.amount, s.expires_at)
            .cte("settled")
        )
        upsert = postgresql.insert(budget_counters).from_select(
            ["counter_id", "period_start", "spent", "expires_at"],
            sa.select(settled.c.counter_id, settled.c.period_start, settled.c.amount,
                      settled.c.expires_at)
            .order_by(settled.c.counter_id, settled.c.period_start),
        )
        upsert = upsert.on_conflict_do_update(
            index_elements=[c.counter_id, c.period_start],
            set_={"spent": c.spent + upsert.excluded.spent},
        ).returning(c.counter_id, c.period_start, c.spent)
        return {(b, p): spent for b, p, spent in conn.execute(upsert)}

    @staticmethod
    def _add_sqlite(conn: sa.Connection, rows: list[dict]) -> dict[CounterKey, int]:
        c = budget_counters.c
        totals: dict[CounterKey, int] = {}
        for row in rows:
            inserted = conn.execute(
                sqlite.insert(budget_settlements).values(row).on_conflict_do_nothing()
            ).rowcount
            if not inserted:
                continue
            upsert = sqlite.insert(budget_counters).values(
                counter_id=row["counter_id"], period_start=row["period_start"],
                spent=row["amount"], expires_at=row["expires_at"],
            )
            upsert = upsert.on_conflict_do_update(
                index_elements=[c.counter_id, c.period_start],
                set_={"spent": c.spent + upsert.excluded.spent},
            ).returning(c.spent)
            totals[(row["counter_id"], row["period_start"])] = conn.execute(upsert).scalar_one()
        return totals

    def read(self, keys: Sequence[CounterKey]) -> list[int]:
        with self.engine.connect() as conn:
            return self._read(conn, keys)

    @staticmethod
    def _read(conn: sa.Connection, keys: Sequence[CounterKey]) -> list[int]:
        if not keys:
            return []
        c = budget_counters.c
        found = dict(
            ((b, p), spent)
            for b, p, spent in conn.execute(
                sa.select(c.counter_id, c.period_start, c.spent).where(
                    sa.tuple_(c.counter_id, c.period_start).in_(list(keys))
                )
            )
        )
        return [found.get(key, 0) for key in keys]

    def in_ledger(self, conn: sa.Connection, keys: Sequence[CounterKey]) -> dict[CounterKey, int]:
        """Settlements whose events are in the ledger, joined in the database itself: this
        reads every settlement of the period (cost O(settled events), once per reload)."""
        if not keys:
            return {}
        s = budget_settlements.c
        query = (
            sa.select(s.counter_id, s.period_start, sa.func.sum(s.amount))
            .join_from(budget_settlements, events, events.c.event_id == s.event_id)
            .where(sa.tuple_(s.counter_id, s.period_start).in_(list(keys)))
            .group_by(s.counter_id, s.period_start)
        )
        found = {(b, p): int(total) for b, p, total in conn.execute(query)}
        return {key: found.get(key, 0) for key in keys}

    def prune(self, now: datetime, current: Sequence[CounterKey]) -> None:
        with self.engine.begin() as conn:
            conn.execute(budget_settlements.delete().where(budget_settlements.c.expires_at <= now))
            conn.execute(budget_counters.delete().where(budget_counters.c.expires_at <= now))


# KEYS: total, settled event ids (hash), settlement log (list); ARGV: event id, amount,
# expiry (unix seconds). Adds only an event not settled before; returns the total.
_ADD = """
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 1 then
  redis.call('RPUSH', KEYS[3], ARGV[1] .. ' ' .. ARGV[2])
  local total = redis.call('INCRBY', KEYS[1], ARGV[2])
  for i = 1, 3 do redis.call('EXPIREAT', KEYS[i], ARGV[3]) end
  return total
end
return tonumber(redis.call('GET', KEYS[1]) or '0')
"""


class RedisCounters:
    """Counters in Redis: INCRBY on integer units inside one Lua script per charge (atomic,
    pipelined so one settle is one round trip), MGET for an admission. A budget period's
    three keys share a hash tag, so they live in one slot of a Redis Cluster."""

    shared = True

    def __init__(self, client: redis.Redis, prefix: str = "spendtrail:budget") -> None:
        self.client = client
        self.prefix = prefix
        self._add = client.register_script(_ADD)
        self._lock = threading.Lock()
        self._cursor: dict[CounterKey, int] = {}  # log entries this process has read
        self._tracker = _Tracker()

    def _keys(self, key: CounterKey) -> tuple[str, str, str]:
        base = f"{self.prefix}:{{{key[0]}:{key[1].isoformat()}}}"
        return f"{base}:spent", f"{base}:events", f"{base}:log"

    def add(self, event_id: str, charges: Sequence[Charge]) -> list[int]:
        pipe = self.client.pipeline(transaction=False)
        for charge in charges:
            self._add(
                keys=self._keys(charge.key),
                args=[event_id, charge.amount, int(charge.expires_at.timestamp())],
                client=pipe,
            )
        return [int(total) for total in pipe.execute()]

    def read(self, keys: Sequence[CounterKey]) -> list[int]:
        if not keys:
            return []
        values = self.client.mget([self._keys(key)[0] for key in keys])
        return [int(value) if value is not None else 0 for value in values]

    def in_ledger(self, conn: sa.Connection, keys: Sequence[CounterKey]) -> dict[CounterKey, int]:
        """Reads the settlement log past this process's cursor, then checks the still
        unconfirmed event ids against the ledger."""
        pipe = self.client.pipeline(transaction=False)
        with self._lock:
            cursors = [self._cursor.get(key, 0) for key in keys]
        for key, cursor in zip(keys, cursors, strict=True):
            log = self._keys(key)[2]
            pipe.llen(log)
            pipe.lrange(log, cursor, -1)
        replies = pipe.execute()
        with self._lock:
            for i, key in enumerate(keys):
                length, entries = replies[2 * i], replies[2 * i + 1]
                if length < cursors[i]:  # the store lost the counter: start over with it
                    self._tracker.forget(key)
                    self._cursor[key] = 0
                    continue
                for entry in entries:
                    text = entry if isinstance(entry, str) else entry.decode()  # decode_responses
                    event_id, _, amount = text.rpartition(" ")
                    self._tracker.note(key, event_id, int(amount))
                self._cursor[key] = cursors[i] + len(entries)
            waiting = self._tracker.waiting(keys)
        found = ingested(conn, waiting) if waiting else set()
        with self._lock:
            return self._tracker.confirm(found, keys)

    def prune(self, now: datetime, current: Sequence[CounterKey]) -> None:
        """Redis expires the keys itself; this forgets the process's own bookkeeping of
        periods no longer in use."""
        with self._lock:
            for key in set(self._cursor).difference(current):
                del self._cursor[key]
                self._tracker.forget(key)
