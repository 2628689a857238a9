"""`spendtrail gateway --workers 2`: the real process, its forked workers and the host's one
ingester, called through the real openai SDK.

Every call the provider took (the upstream double's own log) ends as exactly one event in the
ledger, written by the parent's ingester; both workers served calls (the spool names its
files by writer pid); SIGTERM to the parent stops every worker after its drain; a worker
killed with SIGKILL is replaced, and its calls in flight become `interrupted` events.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from collections import Counter
from pathlib import Path

import openai
import pytest
import sqlalchemy as sa
from client_threads import ChatLoad
from factories import sqlite_gateway_ledger
from gateway_process import GatewayProcess
from gateway_upstream import UpstreamDouble

from spendtrail.budgets import Budget, save_budget
from spendtrail.gateway.workers import default_workers
from spendtrail.journal.spool import writer_of
from spendtrail.ledger.db import make_engine
from spendtrail.ledger.schema import events

UPSTREAM_KEY = "sk-upstream-W0rkersW0rkersW0rkersW0rk"
GRACE = 3.0
MARGIN = 15.0  # the workers' exit path and the ingester's last round, on a loaded machine


@pytest.fixture
def upstream():
    with UpstreamDouble.serving(UPSTREAM_KEY) as double:
        double.answer_delay = 0.02  # calls stay in flight long enough to be cut by a kill
        yield double


@pytest.fixture
def ledger(tmp_path) -> tuple[str, str]:
    return sqlite_gateway_ledger(tmp_path)


def workers(url: str, upstream: str, home: Path, *args: str) -> GatewayProcess:
    return GatewayProcess(
        url,
        upstream,
        UPSTREAM_KEY,
        home,
        "--workers",
        "2",
        "--ingest",
        "--grace",
        str(GRACE),
        *args,
    )


def worker_pids(base_url: str, count: int = 2, timeout: float = 30) -> set[int]:
    """The pids of `count` ready workers: /readyz on new connections, which the kernel
    hashes over the workers' sockets, until that many different ones have answered 200."""
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while len(seen) < count:
        assert time.monotonic() < deadline, f"only workers {seen} became ready"
        try:
            with urllib.request.urlopen(base_url + "/readyz", timeout=2) as response:
                seen.add(json.load(response)["pid"])
        except OSError:  # a worker starting again, or not ready yet
            time.sleep(0.05)
    return seen


def ledger_outcomes(url: str) -> list:
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(events.c.event_id, events.c.outcome, events.c.provider_request_id)
        ).all()
    engine.dispose()
    return rows


def spool_files_of(spool: Path, pid: int) -> list[Path]:
    return [p for p in spool.rglob("*.jsonl*") if writer_of(p.name).pid == pid]


def serve_a_call_on(gateway: GatewayProcess, key: str, pid: int) -> None:
    """Calls on new connections (the kernel hashes each to a worker) until worker `pid` has
    journaled one."""
    deadline = time.monotonic() + 30
    while not spool_files_of(gateway.spool, pid):
        assert time.monotonic() < deadline, f"worker {pid} served no call"
        with openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key) as client:
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
            )


def running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_two_workers_serve_and_stop_together_with_one_event_per_call(upstream, ledger, tmp_path):
    url, key = ledger
    with workers(url, upstream.url, tmp_path / "home") as gateway:
        pids = worker_pids(gateway.base_url)
        with ChatLoad(gateway.base_url + "/v1", key, threads=6) as load:
            load.wait_for(300)
            for pid in pids:  # the load's connections may all sit on one worker
                serve_a_call_on(gateway, key, pid)
            gateway.signal(signal.SIGTERM)  # under load
            code = gateway.wait(GRACE + MARGIN)
    assert code == 0, gateway.output()
    assert gateway.output().count("stopping: no new connections") == 2  # each worker drained
    assert not [pid for pid in pids if running(pid)]
    # The host's ingester took every worker's files, the last ones sealed at the stop included.
    assert list(gateway.spool.glob("*.jsonl*")) == []
    writers = Counter(writer_of(p.name).pid for p in (gateway.spool / "ingested").iterdir())
    assert set(writers) == pids, f"files by writer: {writers}, workers {pids}"
    rows = ledger_outcomes(url)
    assert len(rows) == len(upstream.received)  # every call the provider took, once
    assert load.event_ids() <= {row.event_id for row in rows}
    assert "interrupted" not in {row.outcome for row in rows}


def scrape(base_url: str) -> dict[str, float]:
    """/metrics on a new connection (the kernel picks the worker): sample -> value."""
    with urllib.request.urlopen(base_url + "/metrics", timeout=5) as response:
        lines = response.read().decode().splitlines()
    return {name: float(value) for name, value in (
        line.rsplit(" ", 1) for line in lines if line and not line.startswith("#"))}


def dumped_calls(folder: Path) -> int:
    """The answered chat calls in the workers' dumps under `folder` (a file being replaced
    counts 0 this time)."""
    total = 0
    for path in folder.rglob("*.json"):
        try:
            rows = json.loads(path.read_text())["requests"]
            total += sum(n for endpoint, code, n in rows
                         if (endpoint, code) == ("/v1/chat/completions", 200))
        except (OSError, ValueError):
            pass
    return total


def test_metrics_sum_the_workers_whichever_answers(upstream, ledger, tmp_path):
    url, key = ledger
    chat = 'spendtrail_gateway_requests_total{endpoint="/v1/chat/completions",code="200"}'
    with workers(url, upstream.url, tmp_path / "home") as gateway:
        pids = worker_pids(gateway.base_url)
        for pid in pids:  # each worker serves calls of its own
            serve_a_call_on(gateway, key, pid)
        calls = len(upstream.received)
        # Await every worker's dump (written each second) holding its own calls: until then
        # a worker answers with another's older dump.
        deadline = time.monotonic() + 15
        while (dumped := dumped_calls(gateway.spool / "metrics")) != calls:
            assert time.monotonic() < deadline, f"{dumped} of {calls} calls dumped"
            time.sleep(0.2)
        # Every scrape, whichever worker it lands on, counts every worker's calls.
        for _ in range(8):
            seen = scrape(gateway.base_url)
            assert (seen[chat], seen["spendtrail_gateway_workers"]) == (calls, 2)
            assert seen['spendtrail_gateway_attempts_total{endpoint="/v1/chat/completions",'
                        'outcome="success"}'] == calls
            assert seen["spendtrail_gateway_upstream_latency_seconds_count"] == calls
        folder = gateway.spool / "metrics"
        assert {p.stem for p in folder.rglob("*.json")} == {str(pid) for pid in pids}
        gateway.signal(signal.SIGTERM)
        assert gateway.wait(GRACE + MARGIN) == 0, gateway.output()


def test_a_killed_worker_is_started_again_and_its_calls_in_flight_are_interrupted(
    upstream, ledger, tmp_path
):
    url, key = ledger
    with workers(url, upstream.url, tmp_path / "home") as gateway:
        pids = worker_pids(gateway.base_url)
        with ChatLoad(gateway.base_url + "/v1", key, threads=6) as load:
            load.wait_for(200)
            victim = max(pids)
            # The load's six connections may all hash to the other worker: the victim serves
            # one call of its own first, so it has a journal for the host's ingester to take.
            serve_a_call_on(gateway, key, victim)
            os.kill(victim, signal.SIGKILL)
            deadline = time.monotonic() + 30
            while victim in (now := worker_pids(gateway.base_url)) or len(now) < 2:
                assert time.monotonic() < deadline, "the killed worker was not replaced"
            (replacement,) = now - pids
            load.wait_for(100)
        # The clients' connections stay where they are; new ones reach the replacement too.
        serve_a_call_on(gateway, key, replacement)
        gateway.signal(signal.SIGTERM)
        code = gateway.wait(GRACE + MARGIN)
    assert code == 0, gateway.output()
    assert f"worker {victim} exited (signal SIGKILL); starting it again" in gateway.output()
    rows = ledger_outcomes(url)
    # Every call the provider took is one event: those cut by the kill are `interrupted`
    # (their intents, from the dead writer's file; reconciliation completes them from the
    # bill), the rest completed, each with the provider's request id once. An intent cut
    # before its call reached the provider is an interrupted event the bill will not match.
    interrupted = [row for row in rows if row.outcome == "interrupted"]
    completed = [row.provider_request_id for row in rows if row.outcome != "interrupted"]
    billed = {call.request_id for call in upstream.received}
    assert len(completed) == len(set(completed)) and set(completed) <= billed
    assert len(billed - set(completed)) <= len(interrupted) <= load.failures
    assert len(rows) >= len(billed)
    assert load.event_ids() <= {row.event_id for row in rows}
    writers = {writer_of(p.name).pid for p in (gateway.spool / "ingested").iterdir()}
    assert writers == pids | {replacement}


def test_memory_budget_counters_cannot_be_split_over_workers(upstream, ledger, tmp_path):
    url, _ = ledger
    engine = make_engine(url)
    with engine.begin() as conn:
        save_budget(
            conn,
            Budget(
                id="team",
                scope="application",
                scope_value="support-assistant",
                period="month",
                limit_units=10**12,
                currency="USD",
            ),
            actor="test",
            reason="workers",
        )
    engine.dispose()
    explicit = workers(url, upstream.url, tmp_path / "explicit")
    done = subprocess.run(
        explicit.args, env=explicit.env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "--workers 2 with --budget-counters memory" in done.stderr
    assert "use --budget-counters sql or redis, or --workers 1" in done.stderr
    # Without --workers the default falls back to one process, and says why.
    if default_workers() < 2:
        pytest.skip("one core: the default is one worker anyway")
    default = GatewayProcess(url, upstream.url, UPSTREAM_KEY, tmp_path / "default")
    del default.env["SPENDTRAIL_GATEWAY_WORKERS"]
    with default:
        assert "1 worker: budgets are defined and counted in memory" in default.output()
        assert len(worker_pids(default.base_url, 1)) == 1
