"""Counters of spend settled by gateways, per budget and period: in memory for one process,
in the ledger database or in Redis for gateways that must hold a budget together.

A counter holds two numbers: `spent` (settled; it only ever grows) and `reserved` (what the
calls in flight may still cost). A reservation is one conditional operation in its store
(refused when it would take spent + reserved past the room a hard limit leaves), and a
settle releases the call's reservation and adds its real cost in one atomic operation, so
no two admissions can both take the last room under a limit (docs/budgets.md).
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

from spendtrail.budgets.model import COUNTED_STATUSES
from spendtrail.budgets.spend import ingested
from spendtrail.ledger.schema import (
    budget_counters,
    budget_reservations,
    budget_settlements,
    events,
)

if TYPE_CHECKING:
    import redis

CounterKey = tuple[str, date]  # Budget.counter_id, period start


@dataclass(frozen=True, slots=True)
class Charge:
    key: CounterKey
    amount: int  # pico-units or tokens, in the budget's unit
    expires_at: datetime  # when the store may forget the counter (after the period)


@dataclass(frozen=True, slots=True)
class Hold:
    """A reservation on one counter: `amount` is refused when spent + reserved is already at
    `room`, or would pass it with `amount` (room: None for a budget without a hard limit)."""

    key: CounterKey
    amount: int
    room: int | None
    expires_at: datetime  # of the counter, as for a Charge
    until: datetime  # when a reservation never settled (a crashed gateway) is dropped

    def fits(self, spent: int, reserved: int) -> bool:
        if self.room is None:
            return True
        return spent + reserved < self.room and spent + reserved + self.amount <= self.room


@dataclass(frozen=True, slots=True)
class Held:
    """One counter as a reservation found it; `granted` is False on every counter when any
    was refused (nothing is then held)."""

    granted: bool
    spent: int
    reserved: int  # including this reservation when granted


class Counters(Protocol):
    # True when reading a counter is a round trip to a store other processes write to.
    shared: bool

    def reserve(self, reservation_id: str, holds: Sequence[Hold]) -> list[Held]:
        """Hold every amount, or none when one does not fit; one result per hold."""
        ...

    def release(self, reservation_id: str, keys: Sequence[CounterKey]) -> None:
        """Drop a reservation without settling it (the call was not made or not recorded)."""
        ...

    def add(
        self, event_id: str, charges: Sequence[Charge],
        release: tuple[str, Sequence[CounterKey]] | None = None,
    ) -> list[int]:
        """Add one event's charges, releasing its reservation (id, counters) in the same
        atomic step; the counters' settled totals afterwards, one per charge."""
        ...

    def read(self, keys: Sequence[CounterKey]) -> list[tuple[int, int]]:
        """Current (spent, reserved), one per key ((0, 0) for a counter never used)."""
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
        self._reserved: dict[CounterKey, int] = {}
        self._holds: dict[str, dict[CounterKey, int]] = {}
        self._expires: dict[CounterKey, datetime] = {}
        self._tracker = _Tracker()

    def reserve(self, reservation_id: str, holds: Sequence[Hold]) -> list[Held]:
        with self._lock:
            seen = [(self._totals.get(h.key, 0), self._reserved.get(h.key, 0)) for h in holds]
            if not all(h.fits(spent, reserved) for (spent, reserved), h in zip(
                    seen, holds, strict=True)):
                return [Held(False, spent, reserved) for spent, reserved in seen]
            held = self._holds.setdefault(reservation_id, {})
            for hold in holds:
                self._reserved[hold.key] = self._reserved.get(hold.key, 0) + hold.amount
                self._expires.setdefault(hold.key, hold.expires_at)
                held[hold.key] = held.get(hold.key, 0) + hold.amount
            return [Held(True, spent, reserved + h.amount)
                    for (spent, reserved), h in zip(seen, holds, strict=True)]

    def release(self, reservation_id: str, keys: Sequence[CounterKey]) -> None:
        with self._lock:
            self._release(reservation_id)

    def _release(self, reservation_id: str) -> None:
        for key, amount in self._holds.pop(reservation_id, {}).items():
            if key in self._reserved:  # else pruned with its period
                self._reserved[key] -= amount

    def add(
        self, event_id: str, charges: Sequence[Charge],
        release: tuple[str, Sequence[CounterKey]] | None = None,
    ) -> list[int]:
        with self._lock:
            if release is not None:
                self._release(release[0])
            totals = []
            for charge in charges:
                total = self._totals.get(charge.key, 0) + charge.amount
                self._totals[charge.key] = total
                self._expires[charge.key] = charge.expires_at
                self._tracker.note(charge.key, event_id, charge.amount)
                totals.append(total)
            return totals

    def read(self, keys: Sequence[CounterKey]) -> list[tuple[int, int]]:
        totals, reserved = self._totals, self._reserved  # atomic dict reads; no lock
        return [(totals.get(key, 0), reserved.get(key, 0)) for key in keys]

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
                self._totals.pop(key, None)
                self._reserved.pop(key, None)
                del self._expires[key]
                self._tracker.forget(key)


class SqlCounters:
    """Counters in the ledger database (PostgreSQL for replicas; SQLite for processes on one
    machine). One transaction per reservation and per settle; one SELECT per read.

    A reservation is a conditional upsert per counter (``ON CONFLICT DO UPDATE ... WHERE
    spent + reserved + amount <= room``): PostgreSQL re-checks the condition on the locked
    row, SQLite runs one writer at a time, so two reservations never both take the last
    room. Each reservation is also a row, so one never settled is dropped when it expires."""

    shared = True

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert

    def reserve(self, reservation_id: str, holds: Sequence[Hold]) -> list[Held]:
        found: dict[CounterKey, Held] = {}
        try:
            with self.engine.begin() as conn:
                # Sorted keys: concurrent transactions lock counter rows in one order, so
                # never deadlock.
                for hold in sorted(holds, key=lambda h: h.key):
                    found[hold.key] = self._hold(conn, hold)
                conn.execute(self._insert(budget_reservations), [
                    {"counter_id": h.key[0], "period_start": h.key[1],
                     "reservation_id": reservation_id, "amount": h.amount,
                     "expires_at": h.until} for h in holds])
            return [found[h.key] for h in holds]
        except _Refused:  # the transaction rolled back: nothing is held
            pass
        with self.engine.connect() as conn:
            seen = self._read(conn, [h.key for h in holds])
        return [Held(False, spent, reserved) for spent, reserved in seen]

    def _hold(self, conn: sa.Connection, hold: Hold) -> Held:
        if not hold.fits(0, 0):  # too large even for an empty counter
            raise _Refused
        c = budget_counters.c
        upsert = self._insert(budget_counters).values(
            counter_id=hold.key[0], period_start=hold.key[1], spent=0, reserved=hold.amount,
            expires_at=hold.expires_at)
        total = c.spent + c.reserved
        upsert = upsert.on_conflict_do_update(
            index_elements=[c.counter_id, c.period_start],
            set_={"reserved": c.reserved + upsert.excluded.reserved},
            # A new row skips this condition; it was checked against an empty counter above.
            where=None if hold.room is None else sa.and_(
                total < hold.room, total + upsert.excluded.reserved <= hold.room),
        ).returning(c.spent, c.reserved)
        row = conn.execute(upsert).one_or_none()
        if row is None:
            raise _Refused
        return Held(True, row.spent, row.reserved)

    def release(self, reservation_id: str, keys: Sequence[CounterKey]) -> None:
        with self.engine.begin() as conn:
            self._release(conn, reservation_id, keys)

    @staticmethod
    def _release(conn: sa.Connection, reservation_id: str, keys: Sequence[CounterKey]) -> None:
        r = budget_reservations.c
        held = conn.execute(
            budget_reservations.delete()
            .where(r.reservation_id == reservation_id,
                   sa.tuple_(r.counter_id, r.period_start).in_(list(keys)))
            .returning(r.counter_id, r.period_start, r.amount)
        ).all()
        _unreserve(conn, held)

    def add(
        self, event_id: str, charges: Sequence[Charge],
        release: tuple[str, Sequence[CounterKey]] | None = None,
    ) -> list[int]:
        # Sorted keys: concurrent settles lock counter rows in one order, so never deadlock.
        ordered = sorted(set(c.key for c in charges))
        rows = [
            {"counter_id": c.key[0], "period_start": c.key[1], "event_id": event_id,
             "amount": c.amount, "expires_at": c.expires_at}
            for c in sorted(charges, key=lambda c: c.key)
        ]
        with self.engine.begin() as conn:
            if release is not None:
                self._release(conn, *release)
            if not rows:
                return []
            if self.engine.dialect.name == "postgresql":
                totals = self._add_postgresql(conn, rows)
            else:
                totals = self._add_sqlite(conn, rows)
            missing = [key for key in ordered if key not in totals]
            if missing:  # a repeated settle: nothing added, report the totals as they are
                totals.update(zip(missing, (spent for spent, _ in self._read(conn, missing)),
                                  strict=True))
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

    def read(self, keys: Sequence[CounterKey]) -> list[tuple[int, int]]:
        with self.engine.connect() as conn:
            return self._read(conn, keys)

    @staticmethod
    def _read(conn: sa.Connection, keys: Sequence[CounterKey]) -> list[tuple[int, int]]:
        if not keys:
            return []
        c = budget_counters.c
        found = {
            (b, p): (spent, reserved)
            for b, p, spent, reserved in conn.execute(
                sa.select(c.counter_id, c.period_start, c.spent, c.reserved).where(
                    sa.tuple_(c.counter_id, c.period_start).in_(list(keys))
                )
            )
        }
        return [found.get(key, (0, 0)) for key in keys]

    def in_ledger(self, conn: sa.Connection, keys: Sequence[CounterKey]) -> dict[CounterKey, int]:
        """Settlements whose events are in the ledger, joined in the database itself: this
        reads every settlement of the period (cost O(settled events), once per reload)."""
        if not keys:
            return {}
        s = budget_settlements.c
        query = (
            sa.select(s.counter_id, s.period_start, sa.func.sum(s.amount))
            .join_from(budget_settlements, events, events.c.event_id == s.event_id)
            .where(sa.tuple_(s.counter_id, s.period_start).in_(list(keys)),
                   events.c.allocation_status.in_(COUNTED_STATUSES))
            .group_by(s.counter_id, s.period_start)
        )
        found = {(b, p): int(total) for b, p, total in conn.execute(query)}
        return {key: found.get(key, 0) for key in keys}

    def prune(self, now: datetime, current: Sequence[CounterKey]) -> None:
        """Also drops the reservations of calls never settled (a gateway that crashed)."""
        r = budget_reservations.c
        with self.engine.begin() as conn:
            expired = conn.execute(
                budget_reservations.delete().where(r.expires_at <= now)
                .returning(r.counter_id, r.period_start, r.amount)
            ).all()
            _unreserve(conn, expired)
            conn.execute(budget_settlements.delete().where(budget_settlements.c.expires_at <= now))
            conn.execute(budget_counters.delete().where(budget_counters.c.expires_at <= now))


class _Refused(Exception):
    """A reservation that does not fit: rolls its transaction back."""


def _unreserve(conn: sa.Connection, held: Sequence[sa.Row]) -> None:
    """Take released reservations (counter id, period start, amount) off their counters."""
    c = budget_counters.c
    for counter_id, period_start, amount in sorted(held, key=lambda row: tuple(row[:2])):
        conn.execute(
            budget_counters.update()
            .where(c.counter_id == counter_id, c.period_start == period_start)
            .values(reserved=c.reserved - amount)
        )


# Redis keys of one counter: spent total, settled event ids (hash), settlement log (list),
# reserved total, reservations (hash: id -> "amount deadline"). Lua compares numbers as
# doubles, exact below 2^53 units (9,007 USD in pico-units); INCRBY itself is exact.

# ARGV: event id, amount (0: nothing to add), counter expiry (unix seconds), reservation id
# to release ('' for none). Adds only an event not settled before; returns the spent total.
_ADD = """
if ARGV[4] ~= '' then
  local held = redis.call('HGET', KEYS[5], ARGV[4])
  if held then
    redis.call('HDEL', KEYS[5], ARGV[4])
    redis.call('DECRBY', KEYS[4], string.match(held, '^%d+'))
  end
end
if ARGV[2] ~= '0' and redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 1 then
  redis.call('RPUSH', KEYS[3], ARGV[1] .. ' ' .. ARGV[2])
  local total = redis.call('INCRBY', KEYS[1], ARGV[2])
  for i = 1, 3 do redis.call('EXPIREAT', KEYS[i], ARGV[3]) end
  return total
end
return tonumber(redis.call('GET', KEYS[1]) or '0')
"""

# ARGV: reservation id, amount, room ('' without a hard limit), reservation deadline,
# counter expiry. Returns {granted, spent, reserved}.
_RESERVE = """
local spent = tonumber(redis.call('GET', KEYS[1]) or '0')
local reserved = tonumber(redis.call('GET', KEYS[4]) or '0')
local amount = tonumber(ARGV[2])
if ARGV[3] ~= '' then
  local room = tonumber(ARGV[3])
  if spent + reserved >= room or spent + reserved + amount > room then
    return {0, spent, reserved}
  end
end
if redis.call('HSETNX', KEYS[5], ARGV[1], ARGV[2] .. ' ' .. ARGV[4]) == 1 then
  reserved = redis.call('INCRBY', KEYS[4], ARGV[2])
end
redis.call('EXPIREAT', KEYS[4], ARGV[5])
redis.call('EXPIREAT', KEYS[5], ARGV[5])
return {1, spent, reserved}
"""

# ARGV: reservation id ('' with ARGV[2] = now: drop every reservation past its deadline).
_RELEASE = """
local released = 0
if ARGV[1] ~= '' then
  local held = redis.call('HGET', KEYS[5], ARGV[1])
  if held then
    redis.call('HDEL', KEYS[5], ARGV[1])
    released = redis.call('DECRBY', KEYS[4], string.match(held, '^%d+'))
  end
  return released
end
local entries = redis.call('HGETALL', KEYS[5])
for i = 1, #entries, 2 do
  local amount, deadline = string.match(entries[i + 1], '^(%d+) (%d+)$')
  if tonumber(deadline) <= tonumber(ARGV[2]) then
    redis.call('HDEL', KEYS[5], entries[i])
    redis.call('DECRBY', KEYS[4], amount)
  end
end
return released
"""


class RedisCounters:
    """Counters in Redis: one Lua script per counter for a reservation and for a settle
    (atomic; pipelined, so a settle is one round trip), MGET for a read. A budget period's
    keys share a hash tag, so they live in one slot of a Redis Cluster. A reservation over
    several budgets runs one script each (pipelined) and releases those it took when another
    is refused: meanwhile another call may be refused for room that is freed a moment later
    (too strict, never too lenient)."""

    shared = True

    def __init__(self, client: redis.Redis, prefix: str = "spendtrail:budget") -> None:
        self.client = client
        self.prefix = prefix
        self._add = client.register_script(_ADD)
        self._reserve = client.register_script(_RESERVE)
        self._release = client.register_script(_RELEASE)
        self._lock = threading.Lock()
        self._cursor: dict[CounterKey, int] = {}  # log entries this process has read
        self._tracker = _Tracker()

    def _keys(self, key: CounterKey) -> tuple[str, str, str, str, str]:
        base = f"{self.prefix}:{{{key[0]}:{key[1].isoformat()}}}"
        return (f"{base}:spent", f"{base}:events", f"{base}:log", f"{base}:reserved",
                f"{base}:holds")

    def reserve(self, reservation_id: str, holds: Sequence[Hold]) -> list[Held]:
        pipe = self.client.pipeline(transaction=False)  # one round trip for all budgets
        for hold in holds:
            self._reserve(
                keys=self._keys(hold.key),
                args=[reservation_id, hold.amount, "" if hold.room is None else hold.room,
                      int(hold.until.timestamp()), int(hold.expires_at.timestamp())],
                client=pipe,
            )
        results = [Held(bool(g), int(spent), int(reserved)) for g, spent, reserved in
                   pipe.execute()]
        if all(r.granted for r in results):
            return results
        self.release(reservation_id, [h.key for h, r in zip(holds, results, strict=True)
                                      if r.granted])
        return [Held(False, r.spent, r.reserved - (h.amount if r.granted else 0))
                for h, r in zip(holds, results, strict=True)]

    def release(self, reservation_id: str, keys: Sequence[CounterKey]) -> None:
        if not keys:
            return
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            self._release(keys=self._keys(key), args=[reservation_id, 0], client=pipe)
        pipe.execute()

    def add(
        self, event_id: str, charges: Sequence[Charge],
        release: tuple[str, Sequence[CounterKey]] | None = None,
    ) -> list[int]:
        reservation_id, released = release if release is not None else ("", ())
        pipe = self.client.pipeline(transaction=False)
        for charge in charges:
            self._add(
                keys=self._keys(charge.key),
                args=[event_id, charge.amount, int(charge.expires_at.timestamp()),
                      reservation_id],
                client=pipe,
            )
        charged = {charge.key for charge in charges}
        for key in released:
            if key not in charged:  # a budget the call cost nothing against
                self._release(keys=self._keys(key), args=[reservation_id, 0], client=pipe)
        return [int(total) for total in pipe.execute()[: len(charges)]]

    def read(self, keys: Sequence[CounterKey]) -> list[tuple[int, int]]:
        if not keys:
            return []
        names = [name for key in keys for name in (self._keys(key)[0], self._keys(key)[3])]
        values = [int(value) if value is not None else 0 for value in self.client.mget(names)]
        return list(zip(values[0::2], values[1::2], strict=True))

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
        """Redis expires the keys itself; this drops the reservations of calls never settled
        (a gateway that crashed) and forgets the process's own bookkeeping of periods no
        longer in use."""
        if current:
            pipe = self.client.pipeline(transaction=False)
            for key in current:
                self._release(keys=self._keys(key), args=["", int(now.timestamp())], client=pipe)
            pipe.execute()
        with self._lock:
            for key in set(self._cursor).difference(current):
                del self._cursor[key]
                self._tracker.forget(key)
