"""The concurrency proof: many threads, and several processes sharing PostgreSQL, SQLite or
Redis, loop admit (reserving the call's cost) -> (the upstream call) -> settle against one
budget.

What must hold: no admission that starts after a settle has reached the limit is allowed;
no increment is lost (final spend = admitted calls x cost); and, every estimate being the
call's exact cost, the calls in flight never take the spend past the limit: the budget ends
exactly at it (60 calls' worth).
"""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from factories import example_registry

from spendtrail.budgets import (
    Budget,
    BudgetGuard,
    Estimate,
    MemoryCounters,
    RedisCounters,
    SqlCounters,
    save_budget,
)
from spendtrail.events import AllocationContext
from spendtrail.ledger.db import make_engine

REDIS_URL = "redis://127.0.0.1:6379/0"
COST = 7_000_000  # pico-USD per call
LIMIT = 60 * COST
THREADS = 12
PROCESSES = 4
THREADS_PER_PROCESS = 3


def _search():
    registry = example_registry()
    return registry.validate(
        AllocationContext(application="search-summaries", environment="production",
                          workload_class="batch")
    )


@dataclass
class Tally:
    admitted: int = 0
    late: int = 0  # admissions allowed although they started after the crossing
    in_flight: int = 0
    max_in_flight: int = 0


def hammer(guard: BudgetGuard, at: datetime, threads: int, crossed, tag: str) -> Tally:
    """`threads` workers loop until refused; `crossed` is set by whichever settle first
    reports spend at or over the limit (a threading or multiprocessing Event)."""
    allocation = _search()
    tally = Tally()
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def work(n: int) -> None:
        start.wait()
        for i in range(10**6):
            after_crossing = crossed.is_set()
            call = f"{tag}-{n}-{i}"
            if not guard.admit(allocation, at, reservation_id=call,
                               estimate=Estimate(COST, "USD", 0)).allowed:
                return
            with lock:
                tally.admitted += 1
                tally.late += after_crossing
                tally.in_flight += 1
                tally.max_in_flight = max(tally.max_in_flight, tally.in_flight)
            time.sleep(0.002)  # the upstream call, during which others are admitted
            with lock:
                tally.in_flight -= 1
            states = guard.settle(allocation, event_id=call, cost_pico=COST, currency="USD",
                                  tokens=0, at=at, reservation_id=call)
            if states[0].spent >= LIMIT:
                crossed.set()

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return tally


def define(engine) -> None:
    with engine.begin() as conn:
        save_budget(
            conn,
            Budget(id="search-monthly", scope="application", scope_value="search-summaries",
                   period="month", limit_units=LIMIT, currency="USD", thresholds=(50, 80)),
            actor="test", reason="concurrency proof",
        )


def redis_or_skip():
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.skip(f"Redis not reachable at {REDIS_URL}; start redis-server to run this test")
    return client


@pytest.fixture
def redis_prefix():
    client = redis_or_skip()
    prefix = f"spendtrail-test:{uuid.uuid4().hex}"
    yield prefix
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)
    client.close()


def check(final: int, admitted: int, late: int) -> None:
    assert late == 0, "a call was admitted after a settle had crossed the limit"
    assert final == admitted * COST, "an increment was lost"
    assert final == LIMIT, "the calls in flight took the spend past the limit"


@pytest.mark.parametrize("backend", ["memory", "sql", "redis"])
def test_threads_cannot_overshoot_past_calls_in_flight(ledger, backend, request):
    define(ledger)
    if backend == "memory":
        counters = MemoryCounters()
    elif backend == "sql":
        counters = SqlCounters(ledger)
    else:
        client = redis_or_skip()
        counters = RedisCounters(client, prefix=request.getfixturevalue("redis_prefix"))
    at = datetime.now(UTC)
    guard = BudgetGuard.load(ledger, counters, at=at)
    tally = hammer(guard, at, THREADS, threading.Event(), "t")
    final = guard.admit(_search(), at).states[0].spent
    check(final, tally.admitted, tally.late)
    assert tally.max_in_flight > 1, "the test never had calls in flight together"


def _process(url: str, backend: str, prefix: str, at: datetime, n: int, crossed, ready,
             results) -> None:
    engine = make_engine(url)
    if backend == "sql":
        counters = SqlCounters(engine)
    else:
        import redis

        counters = RedisCounters(redis.Redis.from_url(REDIS_URL), prefix=prefix)
    guard = BudgetGuard.load(engine, counters, at=at)
    ready.wait()  # every process loaded before any starts
    tally = hammer(guard, at, THREADS_PER_PROCESS, crossed, f"p{n}")
    results.put((tally.admitted, tally.late))
    engine.dispose()


@pytest.mark.parametrize("backend", ["sql", "redis"])
def test_processes_sharing_a_store_cannot_overshoot(ledger, ledger_url, backend, request):
    define(ledger)
    prefix = request.getfixturevalue("redis_prefix") if backend == "redis" else ""
    at = datetime.now(UTC)
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: a separate gateway
    crossed, ready, results = context.Event(), context.Barrier(PROCESSES), context.Queue()
    processes = [
        context.Process(target=_process,
                        args=(ledger_url, backend, prefix, at, n, crossed, ready, results))
        for n in range(PROCESSES)
    ]
    for p in processes:
        p.start()
    tallies = [results.get(timeout=120) for _ in processes]
    for p in processes:
        p.join(timeout=30)
        assert p.exitcode == 0
    counters = SqlCounters(ledger) if backend == "sql" else RedisCounters(
        redis_or_skip(), prefix=prefix)
    final = BudgetGuard.load(ledger, counters, at=at).admit(_search(), at).states[0].spent
    admitted = sum(a for a, _ in tallies)
    check(final, admitted, sum(late for _, late in tallies))
    # A process may start after the others used the budget up; two is what proves sharing.
    assert sum(a > 0 for a, _ in tallies) >= 2, "the processes did not spend together"
