"""A hard money limit under a burst, through the real `spendtrail gateway` process.

32 concurrent calls (the real openai SDK, asyncio) against a budget worth about 4 calls, on
each counter store: memory, SQL (SQLite and PostgreSQL ledgers) and Redis; the shared stores
also with two worker processes (`--workers 2`), which hold the limit together. Each call
reserves its estimate (body bytes / 4 input tokens + max_tokens output tokens, at the
catalog's price) before it is sent; here every estimate is at least the call's real cost,
so the spend must end at or under the limit: at most 4 calls pass, the rest get 429.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from decimal import Decimal
from pathlib import Path

import openai
import pytest
import sqlalchemy as sa
from factories import seed_books
from gateway_process import GatewayProcess

from spendtrail.budgets import Budget, save_budget
from spendtrail.gateway.keys import create_key
from spendtrail.ledger.db import make_engine
from spendtrail.ledger.schema import budget_counters
from spendtrail.money import to_pico
from spendtrail.simulator import SimulatorConfig, serve_in_thread

UPSTREAM_KEY = "sk-simulated-upstream-for-budgets-0123456789"
REDIS_URL = "redis://127.0.0.1:6379/0"
BURST = 32
CALL = {
    "model": "gpt-4o-mini",
    "max_tokens": 40,
    "messages": [{"role": "user", "content": "Summarise the quarterly numbers."}],
}


def gateway(url: str, upstream: str, home: Path, counters: str, workers: int = 1) -> GatewayProcess:
    """The gateway with its budgets counted in `counters`, ingesting its spool."""
    return GatewayProcess(
        url,
        upstream,
        UPSTREAM_KEY,
        home,
        "--ingest",
        "--budget-counters",
        counters,
        "--redis-url",
        REDIS_URL,
        "--workers",
        str(workers),
    )


def _cost(raw) -> Decimal:
    amount, currency = raw.headers["X-Spendtrail-Cost"].split()
    assert currency == "USD"
    return Decimal(amount)


async def _burst(base_url: str, key: str) -> list:
    """Every call at once; each returns its raw response or the status error it raised."""
    async with openai.AsyncOpenAI(
        base_url=base_url, api_key=key, max_retries=0, timeout=60
    ) as client:

        async def one():
            try:
                return await client.chat.completions.with_raw_response.create(
                    **CALL, extra_headers={"X-Spendtrail-Workload": "batch"}
                )
            except openai.APIStatusError as error:
                return error

        return await asyncio.gather(*(one() for _ in range(BURST)))


@pytest.fixture
def redis_cleanup():
    names: list[str] = []
    yield names
    if names:
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        for name in names:
            for key in client.scan_iter(f"spendtrail:budget:{{{name}:*"):
                client.delete(key)
        client.close()


@pytest.mark.parametrize(
    "counters,workers",
    [("memory", 1), ("sql", 1), ("redis", 1), ("sql", 2), ("redis", 2)],
    ids=["memory", "sql", "redis", "sql-2-workers", "redis-2-workers"],
)
def test_a_burst_cannot_pass_a_hard_money_limit(
    ledger_url, tmp_path, counters, workers, redis_cleanup
):
    if counters == "redis":
        redis = pytest.importorskip("redis")
        try:
            redis.Redis.from_url(REDIS_URL).ping()
        except redis.ConnectionError:
            pytest.skip(f"Redis not reachable at {REDIS_URL}")
    budget_id = f"burst-{uuid.uuid4().hex[:12]}"
    redis_cleanup.append(budget_id)
    engine = make_engine(ledger_url)
    with engine.begin() as conn:
        seed_books(conn, tmp_path)
        _, key = create_key(
            conn, application="search-summaries", environment="production", actor="test"
        )
        _, probe_key = create_key(
            conn, application="support-assistant", environment="production", actor="test"
        )

    with serve_in_thread(SimulatorConfig(latency_ms=400)) as upstream:
        # What one call really costs, measured on another application (no budget).
        with gateway(ledger_url, upstream, tmp_path / "probe", counters) as running:
            probe = openai.OpenAI(
                base_url=running.base_url + "/v1", api_key=probe_key, max_retries=0
            )
            one = _cost(probe.chat.completions.with_raw_response.create(**CALL))
        limit = 4 * one + one / 2
        with engine.begin() as conn:
            save_budget(
                conn,
                Budget(
                    id=budget_id,
                    scope="application",
                    scope_value="search-summaries",
                    period="month",
                    limit_units=to_pico(limit),
                    currency="USD",
                ),
                actor="test",
                reason="burst test",
            )
        with gateway(ledger_url, upstream, tmp_path / "burst", counters, workers) as running:
            results = asyncio.run(_burst(running.base_url + "/v1", key))
            served = [r for r in results if not isinstance(r, openai.APIStatusError)]
            refused = [r for r in results if isinstance(r, openai.APIStatusError)]
            assert all(r.status_code == 429 and r.code == "budget_exceeded" for r in refused), [
                (r.status_code, r.message) for r in refused
            ]
            spent = sum((_cost(r) for r in served), Decimal(0))
            assert all(_cost(r) == one for r in served)
            assert 1 <= len(served) <= 4, f"{len(served)} calls passed a limit worth 4.5"
            assert spent <= limit
            # Settles run after the responses: once they land, nothing stays reserved.
            if counters in ("sql", "redis"):
                deadline = time.monotonic() + 30
                while (held := _reserved(engine, counters, budget_id)) != 0:
                    assert time.monotonic() < deadline, f"{held} still reserved"
                    time.sleep(0.05)
    engine.dispose()


def _reserved(engine: sa.Engine, counters: str, budget_id: str) -> int:
    if counters == "sql":
        c = budget_counters.c
        with engine.connect() as conn:
            return (
                conn.execute(
                    sa.select(sa.func.sum(c.reserved)).where(c.counter_id.like(f"{budget_id}:%"))
                ).scalar()
                or 0
            )
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    names = list(client.scan_iter(f"spendtrail:budget:{{{budget_id}:*:reserved"))
    total = sum(int(client.get(name) or 0) for name in names)
    client.close()
    return total
