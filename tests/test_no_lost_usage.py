"""No lost usage: a gateway killed with SIGKILL under load, and a database stopped under load.

Every response a client received must end with exactly one event in the ledger, none twice,
and every call the provider took (so billed) must have one, delivered or not: the calls in
flight at the kill are `interrupted` events with their owner. The gateway runs as a real
`spendtrail gateway` process in front of the provider simulator or the upstream double, and
the clients are the real openai SDK.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import openai
import pytest
import sqlalchemy as sa
from client_threads import ChatLoad, ClientThreads
from factories import gateway_ledger
from gateway_upstream import UpstreamDouble
from private_postgres import PrivatePostgres

from spendtrail.journal.spool import recover_orphans
from spendtrail.ledger.db import make_engine
from spendtrail.ledger.ingest import Ingester
from spendtrail.ledger.schema import events
from spendtrail.periods import parse_period
from spendtrail.reconcile import import_bill, reconcile
from spendtrail.simulator import SimulatorConfig, serve_in_thread

UPSTREAM_KEY = "sk-simulated-upstream-secret-0123456789"
BATCH = {"X-Spendtrail-Workload": "batch"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Gateway:
    """`spendtrail gateway` as a separate process that can be killed and started again."""

    def __init__(self, url: str, upstream: str, tmp_path: Path):
        self.port = _free_port()
        self.spool = tmp_path / "spool"
        self.env = {**os.environ, "SPENDTRAIL_DATABASE_URL": url,
                    "SPENDTRAIL_SPOOL_DIR": str(self.spool),
                    "SPENDTRAIL_HOME": str(tmp_path / "home"),
                    "SPENDTRAIL_UPSTREAM_KEY": UPSTREAM_KEY,
                    # one process, so SIGKILL cuts its calls in flight (with workers, they
                    # would drain: test_gateway_workers.py)
                    "SPENDTRAIL_GATEWAY_WORKERS": "1"}
        self.args = [sys.executable, "-m", "spendtrail.cli.app", "gateway", "--profile", "custom",
                     "--upstream", upstream, "--provider", "cometapi",
                     "--port", str(self.port), "--refresh-seconds", "0.5"]
        self.log = tmp_path / "gateway.log"
        self.process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(self.args, env=self.env, stdout=log, stderr=log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1):
                    return
            except OSError:
                assert self.process.poll() is None, self.log.read_text()
                time.sleep(0.05)
        raise AssertionError(f"gateway did not start: {self.log.read_text()}")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        self.process.wait(60)

    def close(self) -> None:
        """Whatever happened: a gateway still running is killed, never left behind."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def _catch_up(url: str, spool: Path) -> None:
    """What any later gateway or `ingest --follow` does: seal orphans, ingest the spool."""
    recover_orphans(spool)
    engine = make_engine(url)
    Ingester(engine).ingest_spool(spool)
    engine.dispose()


def _assert_each_received_once(url: str, received: list[tuple[str, str]]) -> None:
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(events.c.event_id, events.c.provider_request_id)).all()
    engine.dispose()
    by_event = {r.event_id: r.provider_request_id for r in rows}
    per_provider_id: dict[str, int] = {}
    for r in rows:
        per_provider_id[r.provider_request_id] = per_provider_id.get(r.provider_request_id, 0) + 1
    missing = [e for e, _ in received if e not in by_event]
    assert not missing, f"{len(missing)} received responses have no event"
    assert all(by_event[e] == p for e, p in received)
    twice = [p for _, p in received if per_provider_id[p] != 1]
    assert not twice, f"{len(twice)} provider calls recorded more than once"


def test_sigkill_under_load_loses_and_doubles_nothing(ledger_url, tmp_path):
    key = gateway_ledger(ledger_url, tmp_path, "search-summaries")
    with serve_in_thread(SimulatorConfig(latency_ms=3, seed=1)) as upstream:
        gateway = Gateway(ledger_url, upstream, tmp_path)
        try:
            gateway.start()
            with ChatLoad(gateway.base_url, key, headers=BATCH) as load:
                load.wait_for(150)
                gateway.kill()  # mid-load: requests are in flight, a spool file is open
                before_kill = load.count()
                gateway.start()  # the same port, the same spool
                load.wait_for(150)
            gateway.stop()
        finally:
            gateway.close()
    _catch_up(ledger_url, gateway.spool)
    assert before_kill >= 150 and len(load.received) >= before_kill + 150
    _assert_each_received_once(ledger_url, load.received)


class InFlight(ClientThreads):
    """Client threads that keep slow calls in flight, streamed and not, until stopped."""

    def __init__(self, base_url: str, key: str, threads: int = 8):
        super().__init__(base_url, key, threads)

    def _run(self, base_url: str, key: str, n: int) -> None:
        client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=10)
        i = 0
        while not self._stop.is_set():
            i += 1
            request = {"model": "gpt-4o-mini", "stream": (i + n) % 2 == 0,
                       "messages": [{"role": "user", "content": f"q {n} {i}"}],
                       "extra_headers": {"X-Spendtrail-Workload": "batch"}}
            try:
                answer = client.chat.completions.create(**request)
                if request["stream"]:
                    for _ in answer:
                        pass
            except (openai.APIConnectionError, openai.APIStatusError):
                time.sleep(0.01)



def _settled(upstream: UpstreamDouble) -> list:
    """The upstream's log once no more calls arrive (those sent before the kill)."""
    while True:
        count = len(upstream.received)
        time.sleep(0.3)
        if len(upstream.received) == count:
            return list(upstream.received)


def _bill_from(upstream_log: list, path: Path) -> Path:
    """The provider's own log as a CometAPI log export: one consume row per call it took."""
    lines = ["created_at,type,token_name,model_name,prompt_tokens,completion_tokens,quota,"
             "is_stream,request_id,group"]
    for call in upstream_log:
        lines.append(f"{int(call.at)},2,cc-100-search,gpt-4o-mini,12,5,3,"
                     f"{str(call.json().get('stream') is True).lower()},{call.request_id},"
                     "default")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_sigkill_with_calls_in_flight_leaves_an_event_for_every_billed_call(
    ledger_url, tmp_path
):
    key = gateway_ledger(ledger_url, tmp_path, "search-summaries")
    upstream = UpstreamDouble(UPSTREAM_KEY)
    upstream.answer_delay = 0.2  # every call is in flight a while before its headers ...
    upstream.chunk_delay = 0.03  # ... and a stream a while after them
    gateway = Gateway(ledger_url, upstream.start(), tmp_path)
    try:
        gateway.start()
        with InFlight(gateway.base_url, key):
            deadline = time.monotonic() + 60
            while len(upstream.received) < 60:
                assert time.monotonic() < deadline, "the load made no progress"
                time.sleep(0.02)
            gateway.kill()  # eight clients, so about eight calls in flight
        billed = _settled(upstream)
    finally:
        if gateway.process.poll() is None:
            gateway.kill()
        upstream.stop()
    _catch_up(ledger_url, gateway.spool)  # what the restarted gateway's ingester does

    engine = make_engine(ledger_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(events)).all()
    stopped = [r for r in rows if r.outcome == "interrupted"]
    assert stopped, "no call was in flight at the kill"
    assert {(r.application, r.workload_class, r.model_requested, r.allocation_status)
            for r in stopped} == {("search-summaries", "batch", "gpt-4o-mini", "allocated")}
    # Every call the provider took has an event: by its request id when the gateway saw the
    # answer's headers, else it is among the interrupted events that never learnt one.
    by_rid = Counter(r.provider_request_id for r in rows if r.provider_request_id)
    assert all(count == 1 for count in by_rid.values()), "a call recorded twice"
    without_event = [call for call in billed if call.request_id not in by_rid]
    blind = [r for r in stopped if r.provider_request_id is None]
    assert len(without_event) <= len(blind)
    assert set(by_rid) <= {call.request_id for call in billed}

    # The provider's bill of those calls reconciles with no billed call left without an
    # event: each interrupted one is matched to its line and priced from it, with its owner.
    bill = import_bill(engine, _bill_from(billed, tmp_path / "bill.csv"), "cometapi-csv",
                       actor="test").bill
    month = parse_period(datetime.fromtimestamp(billed[0].at, UTC).strftime("%Y-%m"))
    record = reconcile(engine, period=month, bill_id=bill.id, reviewer="test", actor="test")
    engine.dispose()
    kinds = Counter(d.kind for d in record.differences)
    assert kinds["billed_not_in_ledger"] == 0, record.differences
    matched = [d for d in record.differences if d.kind == "interrupted"]
    assert len(matched) == len(billed) - (len(rows) - len(stopped))
    assert {d.owner for d in matched} <= {"search-summaries"}
    assert all(d.logged_pico == d.billed_pico for d in matched)


def test_database_outage_under_load_catches_up_when_it_returns(tmp_path):
    server = PrivatePostgres()
    server.start()
    url = server.url
    gateway = None
    try:
        key = gateway_ledger(url, tmp_path, "search-summaries")
        with serve_in_thread(SimulatorConfig(latency_ms=2, seed=2)) as upstream:
            gateway = Gateway(url, upstream, tmp_path)
            gateway.start()
            with ChatLoad(gateway.base_url, key, headers=BATCH) as load:
                load.wait_for(100)
                server.stop()  # the database is gone; the gateway must keep serving
                down_at = load.count()
                load.wait_for(200)  # served while the database is down
                time.sleep(3)  # long enough for spool files to be sealed and retried
                engine_error = None
                try:
                    make_engine(url).connect()
                except sa.exc.OperationalError as error:
                    engine_error = error
                assert engine_error is not None  # it really was down
                server.start()
                load.wait_for(50)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # the gateway's ingester catches up by itself
                engine = make_engine(url)
                with engine.connect() as conn:
                    stored = conn.execute(sa.select(sa.func.count()).select_from(events)).scalar()
                engine.dispose()
                if stored >= len(load.received):
                    break
                time.sleep(0.2)
            gateway.stop()
        assert len(load.received) >= down_at + 200
        _assert_each_received_once(url, load.received)
        assert "ledger unavailable" in gateway.log.read_text()
    finally:
        if gateway is not None:
            gateway.close()
        server.remove()


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch):
    """Loopback traffic must not go through a proxy the machine may define."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
