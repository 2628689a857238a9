"""Budgets: periods, scope matching, ledger spend, `>=`, soft alerts, reload without double
counting. Ledger tests run on SQLite and PostgreSQL; Redis tests need 127.0.0.1:6379."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
import sqlalchemy as sa
from factories import AT, event, example_registry

from spendtrail.budgets import (
    NO_ESTIMATE,
    Budget,
    BudgetError,
    BudgetGuard,
    Estimate,
    MemoryCounters,
    RedisCounters,
    SqlCounters,
    ledger_spend,
    save_budget,
)
from spendtrail.budgets.enforce import HOLD_FOR
from spendtrail.budgets.model import parse_limit, parse_thresholds
from spendtrail.events import AllocationContext
from spendtrail.ledger.ingest import Ingester
from spendtrail.ledger.schema import budget_alerts
from spendtrail.registry import Allocation

REGISTRY = example_registry()
REDIS_URL = "redis://127.0.0.1:6379/0"
COST = 450_000_000  # factories.event(): 1000 input + 500 output tokens of gpt-4o-mini, pico-USD
TOKENS = 1500


def allocation(app="search-summaries", env="production"):
    return REGISTRY.validate(
        AllocationContext(application=app, environment=env, workload_class="batch")
    )


SEARCH = allocation()


def budget(budget_id="search-monthly", **fields) -> Budget:
    values = dict(scope="application", scope_value="search-summaries", period="month",
                  limit_units=1_000_000_000, currency="USD")
    values.update(fields)
    return Budget(id=budget_id, **values)


def define(engine, *budgets: Budget) -> None:
    with engine.begin() as conn:
        for b in budgets:
            save_budget(conn, b, actor="test", reason="test")


def redis_client():
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.skip(f"Redis not reachable at {REDIS_URL}; start redis-server to run this test")
    return client


@pytest.fixture
def redis_counters():
    client = redis_client()
    prefix = f"spendtrail-test:{uuid.uuid4().hex}"
    yield lambda: RedisCounters(client, prefix=prefix)
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)
    client.close()


def _factory(request):
    """Builds counters for guards over one ledger, all guards sharing one store (for memory:
    one process with several guards)."""
    if request.param == "memory":
        shared = MemoryCounters()
        return lambda engine: shared
    if request.param == "sql":
        return SqlCounters
    make = request.getfixturevalue("redis_counters")
    return lambda engine: make()


@pytest.fixture(params=["memory", "sql", "redis"])
def counters_factory(request):
    return _factory(request)


@pytest.fixture(params=["sql", "redis"])
def shared_counters_factory(request):
    return _factory(request)


# -- periods ------------------------------------------------------------------------------


def utc(*parts) -> datetime:
    return datetime(*parts, tzinfo=UTC)


@pytest.mark.parametrize(
    ("period", "at", "start", "end", "label"),
    [
        ("month", utc(2026, 11, 30, 23, 59, 59, 999999), date(2026, 11, 1), date(2026, 12, 1),
         "2026-11"),
        ("month", utc(2026, 12, 1), date(2026, 12, 1), date(2027, 1, 1), "2026-12"),
        ("month", utc(2026, 12, 31, 23), date(2026, 12, 1), date(2027, 1, 1), "2026-12"),
        # 2026-11-22 is a Sunday: still the week that began on Monday the 16th.
        ("week", utc(2026, 11, 22, 23, 59), date(2026, 11, 16), date(2026, 11, 23), "2026-W47"),
        ("week", utc(2026, 11, 23), date(2026, 11, 23), date(2026, 11, 30), "2026-W48"),
        # ISO week across the year end: Friday 2027-01-01 is in 2026-W53.
        ("week", utc(2027, 1, 1, 12), date(2026, 12, 28), date(2027, 1, 4), "2026-W53"),
        ("day", utc(2026, 11, 22, 0, 0), date(2026, 11, 22), date(2026, 11, 23), "2026-11-22"),
        # 20:00 at UTC-5 is 01:00 UTC the next day, in the next month.
        ("month", datetime(2026, 11, 30, 20, tzinfo=timezone(timedelta(hours=-5))),
         date(2026, 12, 1), date(2027, 1, 1), "2026-12"),
    ],
)
def test_calendar_periods_are_utc(period, at, start, end, label):
    found = budget(period=period).period_at(at)
    assert (found.start, found.end, found.label) == (start, end, label)


def test_custom_period_is_inclusive_of_its_days_only():
    b = budget(period="custom", custom_start=date(2026, 11, 10), custom_end=date(2026, 11, 20))
    assert b.period_at(utc(2026, 11, 9, 23, 59, 59)) is None
    assert b.period_at(utc(2026, 11, 10)).label == "2026-11-10..2026-11-19"
    assert b.period_at(utc(2026, 11, 19, 23, 59)).end == date(2026, 11, 20)
    assert b.period_at(utc(2026, 11, 20)) is None


def test_period_needs_an_aware_timestamp():
    with pytest.raises(ValueError, match="UTC offset"):
        budget().period_at(datetime(2026, 11, 1))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"budget_id": "a=b"}, "budget id"),
        ({"scope": "team"}, "scope"),
        ({"period": "custom"}, "start and an end"),
        ({"period": "month", "custom_start": date(2026, 1, 1)}, "takes no start"),
        ({"limit_units": 0}, "positive"),
        ({"thresholds": (80, 50)}, "ascending"),
        ({"thresholds": (50, 120)}, "from 1 to 100"),
    ],
)
def test_bad_definitions_are_refused(fields, message):
    with pytest.raises(BudgetError, match=message):
        budget(**fields)


def test_limits_parse_exactly():
    assert parse_limit("250.5 EUR") == (250_500_000_000_000, "EUR")
    assert parse_limit("2000000 tokens") == (2_000_000, None)
    assert budget(limit_units=parse_limit("0.1 USD")[0]).limit == Decimal("0.1")
    with pytest.raises(BudgetError, match="more than 12 decimal places"):
        parse_limit("0.0000000000001 USD")
    with pytest.raises(BudgetError, match="whole number"):
        parse_limit("1.5 tokens")
    with pytest.raises(BudgetError, match="expected an amount"):
        parse_limit("500")
    assert parse_thresholds("80%,50") == (50, 80)
    assert parse_thresholds("none") == ()


# -- scope --------------------------------------------------------------------------------


def test_scope_matching_follows_the_registry_owner():
    assert SEARCH.status == "allocated"
    owners = [("application", "search-summaries"), ("cost_center", "CC-100"),
              ("business_unit", "consumer"), ("budget_owner", "ana.ruiz")]
    for scope, value in owners:
        assert budget(scope=scope, scope_value=value).matches(SEARCH)
    assert not budget(scope="cost_center", scope_value="CC-200").matches(SEARCH)
    assert not budget(environment="staging").matches(SEARCH)
    assert budget(environment="production").matches(SEARCH)


def test_quarantined_usage_counts_against_no_team_budget():
    quarantined = allocation(env="moon")  # not an environment in the registry
    assert quarantined.status == "quarantined"
    assert quarantined.application == "search-summaries"  # as captured, unproven
    assert not budget().matches(quarantined)


def test_shared_pool_usage_counts_against_the_pool_owner():
    shared = allocation(app="platform-shared")
    assert shared.status == "shared"
    assert budget(scope="cost_center", scope_value="CC-300").matches(shared)


# -- spend from the ledger ----------------------------------------------------------------


def ingest(engine, *events):
    report = Ingester(engine).ingest_events(events)
    assert report.inserted == len(events)


def test_ledger_spend_counts_the_owner_period_and_unit(seeded):
    ingest(
        seeded,
        event(), event(),
        event(env="staging"),
        event(env="moon"),  # quarantined: not counted
        event(app="contract-review"),
        event(model="no-such-model"),  # unpriced: tokens count, money cannot
    )
    november = event()
    november.started_at = utc(2026, 11, 1)
    ingest(seeded, november)
    october = budget().period_at(AT)
    with seeded.connect() as conn:
        def spend(b):
            return ledger_spend(conn, b, b.period_at(AT))
        assert spend(budget()) == 3 * COST
        assert spend(budget(environment="production")) == 2 * COST
        assert spend(budget(currency=None)) == 4 * TOKENS
        assert spend(budget(currency="EUR")) == 0
        assert spend(budget(scope="business_unit", scope_value="consumer")) == 3 * COST
        assert spend(budget(scope="cost_center", scope_value="CC-200")) == COST
        assert spend(budget(period="day")) == 3 * COST
        assert ledger_spend(conn, budget(), october) == 3 * COST


def test_hard_limit_refuses_at_equality(seeded):
    ingest(seeded, event(), event())  # 0.0009 USD
    define(
        seeded,
        budget("at-limit", limit_units=2 * COST),
        budget("one-pico-more", scope="cost_center", scope_value="CC-100",
               limit_units=2 * COST + 1),
    )
    admission = BudgetGuard.load(seeded, at=AT).admit(SEARCH, AT)
    assert not admission.allowed
    assert admission.refused_by.budget.id == "at-limit"
    error = admission.error()["error"]
    assert error["type"] == "budget_exceeded"
    assert (error["budget"], error["period"], error["spent"]) == (
        "at-limit", "2026-10", "0.0009 USD")
    assert "'at-limit'" in error["message"] and "2026-10" in error["message"]
    assert admission.header() == "at-limit=100%;exceeded, one-pico-more=99%;ok"

    define(seeded, budget("at-limit", limit_units=2 * COST + 1))
    assert BudgetGuard.load(seeded, at=AT).admit(SEARCH, AT).allowed


def test_soft_thresholds_and_budgets_without_hard_limit(seeded):
    ingest(seeded, event(), event())
    define(
        seeded,
        budget(thresholds=(50, 80), limit_units=1_000_000_000),  # 90% used
        budget("advisory", scope="budget_owner", scope_value="ana.ruiz", hard_limit=False,
               thresholds=(100,), limit_units=COST),
    )
    guard = BudgetGuard.load(seeded, at=AT)
    admission = guard.admit(SEARCH, AT)
    assert admission.allowed
    assert admission.header() == "search-monthly=90%;soft, advisory=200%;over"
    with seeded.connect() as conn:
        alerts = conn.execute(
            sa.select(budget_alerts.c.budget_id, budget_alerts.c.threshold)
            .order_by(budget_alerts.c.budget_id, budget_alerts.c.threshold)
        ).all()
    # Crossed by ingested spend, found at load.
    assert alerts == [("advisory", 100), ("search-monthly", 50), ("search-monthly", 80)]
    assert guard.admit(allocation(app="contract-review"), AT).header() == "none"


def test_settle_counts_money_in_its_currency_and_tokens(seeded):
    define(seeded, budget(limit_units=2 * COST),
           budget("tokens", scope="cost_center", scope_value="CC-100", currency=None,
                  limit_units=3 * TOKENS))
    guard = BudgetGuard.load(seeded, at=AT)
    states = guard.settle(SEARCH, event_id="e1", cost_pico=COST, currency="EUR",
                          tokens=TOKENS, at=AT)
    assert [(s.budget.id, s.spent) for s in states] == [("tokens", TOKENS)]
    guard.settle(SEARCH, event_id="e2", cost_pico=None, currency=None, tokens=TOKENS, at=AT)
    guard.settle(SEARCH, event_id="e3", cost_pico=COST, currency="USD", tokens=0, at=AT)
    assert guard.admit(SEARCH, AT).header() == "search-monthly=50%;ok, tokens=66%;ok"
    guard.settle(SEARCH, event_id="e4", cost_pico=COST, currency="USD", tokens=TOKENS, at=AT)
    refused = guard.admit(SEARCH, AT)
    assert [s.level for s in refused.states] == ["exceeded", "exceeded"]
    # Quarantined calls and other owners are not refused by this budget.
    assert guard.admit(allocation(env="moon"), AT).allowed
    assert guard.admit(allocation(app="contract-review"), AT).allowed


def test_a_new_period_starts_from_zero(seeded):
    define(seeded, budget(limit_units=COST))
    guard = BudgetGuard.load(seeded, at=AT)
    guard.settle(SEARCH, event_id="e1", cost_pico=COST, currency="USD", tokens=0, at=AT)
    assert not guard.admit(SEARCH, AT).allowed
    november = utc(2026, 11, 1)
    assert guard.admit(SEARCH, november).allowed
    guard.reload(november)
    assert guard.admit(SEARCH, november).header() == "search-monthly=0%;ok"


# -- reload and the ledger ----------------------------------------------------------------
# These run in the current period: Redis expires a counter when its period is over, by the
# server's clock.
NOW = datetime.now(UTC)


def live_event():
    e = event()
    e.started_at = NOW
    return e



def test_reload_never_double_counts(seeded, counters_factory):
    define(seeded, budget(limit_units=100 * COST))
    guard = BudgetGuard.load(seeded, counters_factory(seeded), at=NOW)

    def spent():
        return guard.admit(SEARCH, NOW).states[0].spent

    def settle(e):
        guard.settle(SEARCH, event_id=e.event_id, cost_pico=COST, currency="USD",
                     tokens=TOKENS, at=e.started_at)

    settled_then_ingested = live_event()
    settle(settled_then_ingested)
    assert spent() == COST
    ingest(seeded, settled_then_ingested)
    guard.reload(NOW)
    assert spent() == COST

    settled_only = live_event()  # still in the spool: counted from the counter alone
    settle(settled_only)
    guard.reload(NOW)
    assert spent() == 2 * COST

    ingest(seeded, live_event())  # came in by another path (an import): the ledger counts it
    guard.reload(NOW)
    assert spent() == 3 * COST

    # Ingested before it was settled: counted twice (too much, never too little) until the
    # next reload sees the settlement in the ledger.
    early = live_event()
    ingest(seeded, early)
    guard.reload(NOW)
    settle(early)
    assert spent() == 5 * COST
    guard.reload(NOW)
    assert spent() == 4 * COST

    # A second guard (another gateway process) agrees when the counters are shared.
    other = BudgetGuard.load(seeded, counters_factory(seeded), at=NOW)
    assert other.admit(SEARCH, NOW).states[0].spent == 4 * COST


def test_shared_counters_count_a_repeated_settle_once(seeded, shared_counters_factory):
    counters = shared_counters_factory(seeded)
    define(seeded, budget(limit_units=100 * COST))
    guard = BudgetGuard.load(seeded, counters, at=NOW)
    for _ in range(3):
        guard.settle(SEARCH, event_id="retried", cost_pico=COST, currency="USD", tokens=0,
                     at=NOW)
    assert guard.admit(SEARCH, NOW).states[0].spent == COST


def test_soft_alerts_are_written_once_under_concurrent_settles(seeded, counters_factory):
    define(seeded, budget(thresholds=(50, 80, 100), limit_units=40 * COST, hard_limit=False))
    # Eight guards (gateway processes) each with its own memory of alerts already written:
    # only the database's unique key can keep the rows to one per threshold.
    guards = [BudgetGuard.load(seeded, counters_factory(seeded), at=NOW) for _ in range(8)]
    start = threading.Barrier(len(guards))

    def work(guard, n):
        start.wait()
        for i in range(8):
            guard.settle(SEARCH, event_id=f"g{n}-{i}", cost_pico=COST, currency="USD",
                         tokens=0, at=NOW)

    threads = [threading.Thread(target=work, args=(g, n)) for n, g in enumerate(guards)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with seeded.connect() as conn:
        rows = conn.execute(sa.select(budget_alerts.c.threshold, budget_alerts.c.spent)).all()
    assert sorted(t for t, _ in rows) == [50, 80, 100]
    for threshold, spent in rows:
        assert spent * 100 >= threshold * 40 * COST


def test_a_read_only_view_writes_no_alerts_and_keeps_the_counters(seeded):
    define(seeded, budget(thresholds=(50,), limit_units=4 * COST))
    live = BudgetGuard.load(seeded, SqlCounters(seeded), at=NOW)
    live.settle(SEARCH, event_id="e1", cost_pico=COST, currency="USD", tokens=0, at=NOW)
    ingest(seeded, live_event())  # 50%, seen only through the ledger
    view = BudgetGuard(seeded, SqlCounters(seeded), read_only=True)
    view.reload(NOW + timedelta(days=400))  # a view of a later period prunes nothing
    view.reload(NOW)
    assert [s.spent for s in view.states(NOW)] == [2 * COST]
    with seeded.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(budget_alerts)).scalar() == 0
    live.reload(NOW)
    assert [s.spent for s in live.states(NOW)] == [2 * COST]
    with seeded.connect() as conn:
        assert conn.execute(sa.select(budget_alerts.c.threshold)).scalars().all() == [50]


def test_changing_what_a_budget_counts_starts_new_counters(seeded, counters_factory):
    define(seeded, budget(limit_units=10 * COST))
    guard = BudgetGuard.load(seeded, counters_factory(seeded), at=NOW)
    guard.settle(SEARCH, event_id="e1", cost_pico=COST, currency="USD", tokens=TOKENS, at=NOW)
    define(seeded, budget(limit_units=20 * COST, thresholds=(90,)))  # same spend, new limit
    guard.reload(NOW)
    assert [(s.spent, s.percent) for s in guard.states(NOW)] == [(COST, 5)]
    define(seeded, budget(currency=None, limit_units=10 * TOKENS))  # now counts tokens
    guard.reload(NOW)
    assert [s.spent for s in guard.states(NOW)] == [0]  # never pico-USD read as tokens
    guard.settle(SEARCH, event_id="e2", cost_pico=COST, currency="USD", tokens=TOKENS, at=NOW)
    assert [s.spent for s in guard.states(NOW)] == [TOKENS]


# -- reservations -------------------------------------------------------------------------


def test_a_reservation_holds_room_until_it_settles_or_is_released(seeded, counters_factory):
    """Each admission holds its estimate; one that would cross the hard limit is refused
    however little is spent yet; the settle replaces the estimate by the real cost."""
    define(seeded, budget(limit_units=10 * COST),
           budget("tokens", scope="cost_center", scope_value="CC-100", currency=None,
                  limit_units=100 * TOKENS, hard_limit=False))
    guard = BudgetGuard.load(seeded, counters_factory(seeded), at=NOW)
    estimate = Estimate(4 * COST, "USD", 2 * TOKENS)
    first = guard.admit(SEARCH, NOW, reservation_id="r1", estimate=estimate)
    second = guard.admit(SEARCH, NOW, reservation_id="r2", estimate=estimate)
    assert first.allowed and second.allowed
    assert [(s.spent, s.reserved) for s in second.states] == [(0, 8 * COST), (0, 4 * TOKENS)]
    third = guard.admit(SEARCH, NOW, reservation_id="r3", estimate=estimate)  # 8 + 4 > 10
    assert not third.allowed
    assert third.refused_by.budget.id == "search-monthly"
    assert "estimated cost, 0.0018 USD, would cross the hard limit" in (
        third.error()["error"]["message"])
    # Refused: held nothing, not even on the budget that had room.
    assert [s.reserved for s in guard.states(NOW)] == [8 * COST, 4 * TOKENS]
    guard.settle(SEARCH, event_id="r1", cost_pico=COST, currency="USD", tokens=TOKENS,
                 at=NOW, reservation_id="r1")
    assert [(s.spent, s.reserved) for s in guard.states(NOW)] == [
        (COST, 4 * COST), (TOKENS, 2 * TOKENS)]
    guard.release("r2")  # the call was never made
    guard.release("r2")  # twice is once
    assert [(s.spent, s.reserved) for s in guard.states(NOW)] == [(COST, 0), (TOKENS, 0)]
    # 1 spent + 9 estimated lands exactly on the limit: admitted; then nothing fits.
    assert guard.admit(SEARCH, NOW, reservation_id="r4",
                       estimate=Estimate(9 * COST, "USD", 0)).allowed
    assert not guard.admit(SEARCH, NOW, reservation_id="r5", estimate=NO_ESTIMATE).allowed


def test_an_unpriced_call_holds_no_money_but_its_tokens(seeded):
    define(seeded, budget(limit_units=COST),
           budget("tokens", currency=None, limit_units=3 * TOKENS))
    guard = BudgetGuard.load(seeded, at=NOW)
    unpriced = Estimate(None, None, 2 * TOKENS)
    assert guard.admit(SEARCH, NOW, reservation_id="r1", estimate=unpriced).allowed
    assert [s.reserved for s in guard.states(NOW)] == [0, 2 * TOKENS]
    refused = guard.admit(SEARCH, NOW, reservation_id="r2", estimate=unpriced)
    assert refused.refused_by.budget.id == "tokens"


def test_reservations_of_a_crashed_gateway_expire(seeded, shared_counters_factory):
    define(seeded, budget(limit_units=2 * COST))
    crashed = BudgetGuard.load(seeded, shared_counters_factory(seeded), at=NOW)
    assert crashed.admit(SEARCH, NOW, reservation_id="lost",
                         estimate=Estimate(2 * COST, "USD", 0)).allowed
    other = BudgetGuard.load(seeded, shared_counters_factory(seeded), at=NOW)
    assert not other.admit(SEARCH, NOW, reservation_id="r1",
                           estimate=Estimate(COST, "USD", 0)).allowed
    other.reload(NOW)  # the reservation is still young: kept
    assert [s.reserved for s in other.states(NOW)] == [2 * COST]
    other.counters.prune(datetime.now(UTC) + HOLD_FOR + timedelta(seconds=1), [
        (b.counter_id, b.period_at(NOW).start) for b in [budget(limit_units=2 * COST)]])
    assert [s.reserved for s in other.states(NOW)] == [0]
    assert other.admit(SEARCH, NOW, reservation_id="r2", estimate=Estimate(COST, "USD", 0)).allowed


def test_concurrent_reservations_never_share_the_last_room(seeded, counters_factory):
    """16 threads, each its own guard (gateway) on one store, reserve 1/4 of the limit at
    once and never settle: exactly 4 are admitted."""
    define(seeded, budget(limit_units=4 * COST))
    guards = [BudgetGuard.load(seeded, counters_factory(seeded), at=NOW) for _ in range(16)]
    start = threading.Barrier(len(guards))
    admitted = []

    def work(n, guard):
        start.wait()
        if guard.admit(SEARCH, NOW, reservation_id=f"c{n}",
                       estimate=Estimate(COST, "USD", 0)).allowed:
            admitted.append(n)

    threads = [threading.Thread(target=work, args=(n, g)) for n, g in enumerate(guards)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(admitted) == 4
    assert [s.reserved for s in guards[0].states(NOW)] == [4 * COST]


def test_a_key_proven_owner_without_an_environment_counts_against_every_environment():
    proven = Allocation("allocated", (), "consumer", "search-summaries", None, None, "CC-100",
                        "ana.ruiz")
    assert budget(environment="production").matches(proven)
    assert budget(environment="staging").matches(proven)
    assert not budget(scope="cost_center", scope_value="CC-200").matches(proven)
