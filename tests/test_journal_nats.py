"""The journal on NATS JetStream (docs/journal.md): round trip, parallel ingesters, a gateway
and an ingester killed mid-load, the JetStream server restarted mid-load.

Needs a JetStream server on 127.0.0.1:4222 (skipped with a message when none answers); the
restart test runs a nats-server of its own on another port. Each test has its own stream,
deleted at its end.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import openai
import pytest
import sqlalchemy as sa
from client_threads import ChatLoad
from factories import ROOT, SHEET
from gateway_process import GatewayProcess
from gateway_upstream import UpstreamDouble

from spendtrail.events.model import UsageEvent
from spendtrail.gateway.keys import create_key
from spendtrail.journal.jetstream import JetStreamJournal, JetStreamReader, parse_journal_url
from spendtrail.ledger.db import make_engine
from spendtrail.ledger.follow import follow_stream
from spendtrail.ledger.prices import add_entries
from spendtrail.ledger.registry_versions import save_version
from spendtrail.ledger.schema import events, metadata, pending_intents
from spendtrail.pricing import load_sheet
from spendtrail.registry import load_registry

NATS = ("127.0.0.1", 4222)
UPSTREAM_KEY = "sk-simulated-upstream-secret-0123456789"
BATCH = {"X-Spendtrail-Workload": "batch"}


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1) as sock:
            return sock.recv(4).startswith(b"INFO")
    except OSError:
        return False


def _delete_stream(servers: str, stream: str) -> None:
    import nats

    async def delete() -> None:
        nc = await nats.connect(servers, connect_timeout=2, max_reconnect_attempts=1)
        try:
            await nc.jetstream().delete_stream(stream)
        finally:
            await nc.close()

    try:
        asyncio.run(delete())
    except Exception:  # never created (the test failed before), or its server is gone
        pass


@pytest.fixture
def journal_url():
    """A nats:// journal URL with a stream of this test's own; the stream is deleted after."""
    if not _answers(*NATS):
        pytest.skip(
            "no NATS server with JetStream answers on 127.0.0.1:4222; start one with "
            "`nats-server -a 127.0.0.1 -p 4222 -js`"
        )
    stream = f"T{uuid.uuid4().hex[:12]}"
    # short horizon and ack wait: a killed ingester's batch comes again within seconds
    yield f"nats://127.0.0.1:4222/{stream}?intent_horizon=2&ack_wait=3"
    _delete_stream("nats://127.0.0.1:4222", stream)


@pytest.fixture
def pg_url(postgres_url):
    """The shared PostgreSQL test ledger, emptied: several processes write to it at once."""
    engine = make_engine(postgres_url)
    with engine.begin() as conn:
        names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
        conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return postgres_url


def _seed(url: str, tmp_path: Path) -> str:
    """Registry, prices and one gateway key; returns the key's value."""
    sheet = tmp_path / "prices.yaml"
    sheet.write_text(SHEET)
    engine = make_engine(url)
    with engine.begin() as conn:
        save_version(
            conn,
            load_registry(ROOT / "examples" / "registry.yaml"),
            source_path="examples/registry.yaml",
            actor="test",
        )
        add_entries(conn, load_sheet(sheet), actor="test")
        _, value = create_key(
            conn, application="search-summaries", environment="production", actor="test"
        )
    engine.dispose()
    return value


def _event(n: int, **changes) -> UsageEvent:
    fields = {
        "event_id": f"evt-{n:06d}",
        "request_id": f"req-{n:06d}",
        "attempt": 1,
        "started_at": datetime.now(UTC),
        "provider": "cometapi",
        "endpoint": "/v1/chat/completions",
        "model_requested": "gpt-4o-mini",
        "outcome": "success",
        "http_status": 200,
        "source": "gateway",
        "context": {
            "application": "search-summaries",
            "environment": "production",
            "workload_class": "batch",
        },
    }
    return UsageEvent(**{**fields, **changes})


def _ledger_ids(url: str) -> Counter:
    engine = make_engine(url)
    with engine.connect() as conn:
        ids = conn.execute(sa.select(events.c.event_id)).scalars().all()
    engine.dispose()
    return Counter(ids)


def _wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


class _Following:
    """`follow_stream` on a thread of this process, stopped at the end."""

    def __init__(self, url: str, journal_url: str) -> None:
        self.stop = threading.Event()
        self.reports = []
        self.thread = threading.Thread(
            target=follow_stream,
            args=(url, journal_url),
            kwargs={"interval": 0.2, "stop": self.stop, "on_report": self.reports.append},
        )

    def __enter__(self) -> _Following:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)


def test_a_url_names_the_stream_and_its_options():
    target = parse_journal_url("nats://user:secret@nats.internal:4222/EVENTS?intent_horizon=900")
    assert (target.stream, target.intent_horizon, target.consumer) == ("EVENTS", 900.0, "ingest")
    assert "secret" not in target.display and target.display == "nats://nats.internal:4222/EVENTS"
    from spendtrail.errors import SpendtrailError

    with pytest.raises(SpendtrailError, match="unknown option 'horizon'"):
        parse_journal_url("nats://h:4222/S?horizon=5")
    with pytest.raises(SpendtrailError, match="intent_horizon: expected seconds"):
        parse_journal_url("nats://h:4222/S?intent_horizon=soon")


def test_round_trip_stores_an_event_once_and_ingests_it(ledger_url, journal_url, tmp_path):
    _seed(ledger_url, tmp_path)
    with JetStreamJournal(parse_journal_url(journal_url)) as journal:
        journal.append_intent(_event(1, outcome="interrupted", http_status=None))
        journal.append(_event(1))
        journal.append(_event(1))  # a publish repeated (its acknowledgement was lost)
        journal.append_intent(_event(2, outcome="interrupted", http_status=None))
    # a consumer of its own, so the ingester's finds every message still to deliver
    with JetStreamReader(parse_journal_url(journal_url + "&consumer=peek")) as reader:
        lines = reader.lines(reader.fetch(10, wait=2))
    # the repeat was not stored: an intent, its event, the second call's intent
    assert [line.line for line in lines] == [1, 2, 3]
    assert {line.source for line in lines} == {"nats:" + journal_url.split("/")[3].split("?")[0]}

    with _Following(ledger_url, journal_url) as following:
        # The second call never completes: its intent becomes `interrupted` once held longer
        # than the horizon (2 s here) with everything published before committed.
        _wait(lambda: len(_ledger_ids(ledger_url)) == 2, 30, "both events")
    assert _ledger_ids(ledger_url) == Counter({"evt-000001": 1, "evt-000002": 1})
    engine = make_engine(ledger_url)
    with engine.connect() as conn:
        outcomes = dict(conn.execute(sa.select(events.c.event_id, events.c.outcome)).all())
        held = conn.execute(sa.select(sa.func.count()).select_from(pending_intents)).scalar()
    engine.dispose()
    assert outcomes == {"evt-000001": "success", "evt-000002": "interrupted"}
    assert held == 0
    assert sum(report.interrupted for report in following.reports) == 1


class _IngestProcess:
    """`spendtrail ingest --follow` on the nats journal, as its own process."""

    def __init__(self, url: str, journal_url: str, log: Path) -> None:
        self.env = {
            **os.environ,
            "SPENDTRAIL_DATABASE_URL": url,
            "SPENDTRAIL_JOURNAL_URL": journal_url,
            "COLUMNS": "200",
        }
        self.log = log
        self.process: subprocess.Popen | None = None

    def start(self) -> _IngestProcess:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "spendtrail.cli.app",
                    "ingest",
                    "--follow",
                    "--interval",
                    "0.2",
                ],
                env=self.env,
                stdout=log,
                stderr=log,
            )
        return self

    def inserted(self) -> int:
        text = self.log.read_text() if self.log.exists() else ""
        return sum(int(part.split(",")[0]) for part in text.split("inserted ")[1:])

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def test_a_gateway_ingests_from_the_stream_and_refuses_to_start_without_it(
    ledger_url, journal_url, tmp_path
):
    key = _seed(ledger_url, tmp_path)
    upstream = UpstreamDouble(UPSTREAM_KEY)
    base = upstream.start()
    env = {"SPENDTRAIL_JOURNAL_URL": journal_url}
    try:
        with GatewayProcess(
            ledger_url, base, UPSTREAM_KEY, tmp_path / "gw", "--ingest", env=env
        ) as gateway:
            client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key)
            for n in range(5):
                client.chat.completions.create(
                    model="gpt-4o-mini",
                    messages=[{"role": "user", "content": f"q {n}"}],
                    extra_headers={"X-Spendtrail-Workload": "batch"},
                )
            _wait(lambda: sum(_ledger_ids(ledger_url).values()) == 5, 30, "the events")
            assert not list((tmp_path / "gw" / "spool").glob("*.jsonl*"))  # nothing on disk
        closed_port = _free_port()
        env = {"SPENDTRAIL_JOURNAL_URL": f"nats://127.0.0.1:{closed_port}/X"}
        with pytest.raises(AssertionError, match="the gateway exited") as failed:
            GatewayProcess(ledger_url, base, UPSTREAM_KEY, tmp_path / "gw2", env=env).start()
    finally:
        upstream.stop()
    assert f"cannot open the journal at nats://127.0.0.1:{closed_port}/X" in str(failed.value)


def test_parallel_ingesters_write_each_event_once(pg_url, journal_url, tmp_path):
    _seed(pg_url, tmp_path)
    total = 3000
    ingesters = [
        _IngestProcess(pg_url, journal_url, tmp_path / f"ingest-{n}.log") for n in range(3)
    ]
    try:
        for ingester in ingesters:
            ingester.start()
        with JetStreamJournal(parse_journal_url(journal_url)) as journal:
            for n in range(total):
                journal.append(_event(n))
                if n % 100 == 0:  # a repeated publish now and then
                    journal.append(_event(n))
        _wait(lambda: sum(_ledger_ids(pg_url).values()) >= total, 120, "every event")
        # An ingester prints its batch after the commit: stopping it in between would lose
        # the line (seen once in CI), so every committed batch must be reported first.
        _wait(lambda: sum(i.inserted() for i in ingesters) >= total, 60, "every report")
    finally:
        for ingester in ingesters:
            ingester.close()
    ids = _ledger_ids(pg_url)
    assert len(ids) == total and set(ids.values()) == {1}
    shares = [ingester.inserted() for ingester in ingesters]
    assert sum(shares) == total, shares  # no ingester wrote what another had written
    assert sum(1 for share in shares if share) >= 2, shares  # the work was shared


def _settled(upstream: UpstreamDouble) -> list:
    """The upstream's log once no more calls arrive."""
    while True:
        count = len(upstream.received)
        time.sleep(0.3)
        if len(upstream.received) == count:
            return list(upstream.received)


def _assert_every_billed_call_once(url: str, billed: list, received: set[str]) -> None:
    """Against the provider's own log: each call it took is one event (by its request id,
    or an interrupted event that never learnt it), none twice; each answered call's event
    is there."""
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(events.c.event_id, events.c.outcome, events.c.provider_request_id)
        ).all()
        held = conn.execute(sa.select(sa.func.count()).select_from(pending_intents)).scalar()
    engine.dispose()
    by_rid = Counter(r.provider_request_id for r in rows if r.provider_request_id)
    assert all(count == 1 for count in by_rid.values()), "a provider call recorded twice"
    assert set(by_rid) <= {call.request_id for call in billed}, "an event of no billed call"
    without_event = [call for call in billed if call.request_id not in by_rid]
    blind = [r for r in rows if r.outcome == "interrupted" and r.provider_request_id is None]
    assert len(without_event) <= len(blind), "a billed call lost"
    assert len(rows) == len(billed) + (len(blind) - len(without_event))
    ids = {r.event_id for r in rows}
    assert not [e for e in received if e not in ids], "an answered call has no event"
    assert held == 0


def _gateway(url: str, upstream: str, key: str, home: Path, journal_url: str, port: int):
    return GatewayProcess(
        url,
        upstream,
        UPSTREAM_KEY,
        home,
        "--port",
        str(port),
        env={"SPENDTRAIL_JOURNAL_URL": journal_url},
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_gateway_and_an_ingester_killed_mid_load_lose_and_double_nothing(
    pg_url, journal_url, tmp_path
):
    key = _seed(pg_url, tmp_path)
    upstream = UpstreamDouble(UPSTREAM_KEY)
    upstream.answer_delay = 0.05  # calls are in flight when the gateway dies
    base = upstream.start()
    gateway = _gateway(pg_url, base, key, tmp_path / "gw", journal_url, _free_port())
    ingesters = [
        _IngestProcess(pg_url, journal_url, tmp_path / f"ingest-{n}.log") for n in range(2)
    ]
    try:
        for ingester in ingesters:
            ingester.start()
        gateway.start()
        with ChatLoad(gateway.base_url + "/v1", key, 6, BATCH, timeout=20) as load:
            load.wait_for(150)
            gateway.signal(signal.SIGKILL)  # calls in flight; their intents are published
            gateway.wait(10)
            ingesters[0].kill()  # mid-batch, perhaps: its batch comes again
            gateway.start()  # the same port, nothing of its own kept
            ingesters[0].start()
            load.wait_for(150)
        billed = _settled(upstream)
        # caught up: every billed call has its event, or its intent became `interrupted`
        _wait(lambda: sum(_ledger_ids(pg_url).values()) >= len(billed), 60, "the ledger")
        _wait(lambda: _held(pg_url) == 0, 60, "held intents to resolve")
    finally:
        gateway.close()
        for ingester in ingesters:
            ingester.close()
        upstream.stop()
    assert len(load.received) >= 300
    _assert_every_billed_call_once(pg_url, billed, load.event_ids())
    assert _interrupted(pg_url), "no call was in flight at the kill"


def _interrupted(url: str) -> int:
    engine = make_engine(url)
    with engine.connect() as conn:
        count = conn.execute(
            sa.select(sa.func.count()).select_from(events).where(events.c.outcome == "interrupted")
        ).scalar()
    engine.dispose()
    return count


def _held(url: str) -> int:
    engine = make_engine(url)
    with engine.connect() as conn:
        count = conn.execute(sa.select(sa.func.count()).select_from(pending_intents)).scalar()
    engine.dispose()
    return count


class _NatsServer:
    """A JetStream server of this test's own, on its own port and storage folder."""

    def __init__(self, store: Path) -> None:
        self.port = _free_port()
        self.store = store
        self.process: subprocess.Popen | None = None

    def start(self) -> _NatsServer:
        self.process = subprocess.Popen(
            [
                shutil.which("nats-server") or "/usr/sbin/nats-server",
                "-a",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-js",
                "-sd",
                str(self.store),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait(lambda: _answers("127.0.0.1", self.port), 20, "the nats server")
        return self

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@pytest.mark.skipif(
    not (shutil.which("nats-server") or Path("/usr/sbin/nats-server").exists()),
    reason="nats-server is not installed: the restart test runs one of its own",
)
def test_the_jetstream_server_restarted_mid_load_loses_and_doubles_nothing(pg_url, tmp_path):
    key = _seed(pg_url, tmp_path)
    server = _NatsServer(tmp_path / "jetstream").start()
    journal_url = f"nats://127.0.0.1:{server.port}/RESTART?intent_horizon=2&ack_wait=3"
    upstream = UpstreamDouble(UPSTREAM_KEY)
    base = upstream.start()
    gateway = _gateway(pg_url, base, key, tmp_path / "gw", journal_url, _free_port())
    ingester = _IngestProcess(pg_url, journal_url, tmp_path / "ingest.log")
    try:
        gateway.start()
        ingester.start()
        with ChatLoad(gateway.base_url + "/v1", key, 6, BATCH, timeout=20) as load:
            load.wait_for(150)
            server.kill()  # the journal goes away mid-load: appends wait for it ...
            server.start()  # ... and it is back, with what it had stored
            load.wait_for(150)
        billed = _settled(upstream)
        _wait(lambda: sum(_ledger_ids(pg_url).values()) >= len(billed), 60, "the ledger")
        _wait(lambda: _held(pg_url) == 0, 60, "held intents to resolve")
    finally:
        gateway.close()
        ingester.close()
        upstream.stop()
        server.close()
    assert len(load.received) >= 300
    _assert_every_billed_call_once(pg_url, billed, load.event_ids())
    assert "could not journal" not in gateway.output()  # no append gave up


def test_the_spools_rule_leaves_intents_read_from_a_stream_alone(seeded, tmp_path):
    """A held stream intent has no writer process: the spool's rule (a writer no longer
    running) must not make it `interrupted` while its call may still complete."""
    from spendtrail.events.model import encode_event
    from spendtrail.journal.intents import encode_intent
    from spendtrail.journal.reader import JournalLine
    from spendtrail.ledger.ingest import Ingester

    intent = _event(7, outcome="interrupted", http_status=None)
    ingester = Ingester(seeded)
    ingester.ingest_lines([JournalLine("nats:S", 1, encode_intent(intent), True)])
    report = ingester.ingest_spool(tmp_path / "empty-spool")
    assert (report.interrupted, report.pending) == (0, 0)
    assert _held_in(seeded) == 1
    # its completion, later from the stream, is ingested and the held intent dropped
    ingester.ingest_lines([JournalLine("nats:S", 2, encode_event(_event(7)), True)])
    ingester.ingest_spool(tmp_path / "empty-spool")
    assert _held_in(seeded) == 0
    with seeded.connect() as conn:
        assert conn.execute(sa.select(events.c.outcome)).scalars().all() == ["success"]


def _held_in(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(pending_intents)).scalar()
