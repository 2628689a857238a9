"""Intent records and the orphan rule, on SQLite and PostgreSQL.

Spool files are written by real writer processes that then die by SIGKILL (or by this test
process, which stays alive), and ingested as the gateway's ingester or `spendtrail ingest`
does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest
import sqlalchemy as sa
from factories import AT

from spendtrail.events import AllocationContext, Usage, UsageEvent, encode_event, new_event
from spendtrail.journal.intents import decode_intent, encode_intent, is_intent
from spendtrail.journal.reader import read_lines
from spendtrail.journal.spool import Spool, sealed_files, writer_of, writer_running
from spendtrail.ledger.ingest import Ingester
from spendtrail.ledger.intents import resolve_intents
from spendtrail.ledger.reprice import reprice
from spendtrail.ledger.schema import cost_entries, events, pending_intents, rollups_daily
from spendtrail.periods import parse_period

# A writer process: appends what stdin says ("intent JSON", "event JSON", "rotate"), then
# dies without closing its spool, as a gateway killed mid-load does.
WRITER = """
import os, signal, sys
from pathlib import Path
from spendtrail.events import decode_event
from spendtrail.journal.spool import Spool
spool = Spool(Path(sys.argv[1]), max_age=3600)
for line in sys.stdin.buffer:
    kind, _, data = line.strip().partition(b" ")
    if kind == b"rotate":
        spool.close()
    elif kind == b"intent":
        spool.append_intent(decode_event(data))
    else:
        spool.append(decode_event(data))
os.kill(os.getpid(), signal.SIGKILL)
"""


def _intent(rid: str | None = None, app: str = "search-summaries") -> UsageEvent:
    return new_event(
        started_at=AT,
        provider="cometapi",
        endpoint="/v1/chat/completions",
        model_requested="gpt-4o-mini",
        outcome="interrupted",
        provider_request_id=rid,
        context=AllocationContext(
            application=app, environment="production", workload_class="batch"
        ),
        gateway_key_id="gk_test",
        source="gateway",
    )


def _completion(intent: UsageEvent) -> UsageEvent:
    return msgspec.structs.replace(
        intent,
        outcome="success",
        http_status=200,
        ended_at=AT,
        provider_request_id="r-1",
        usage=Usage(input_tokens=1000, output_tokens=500, requests=1),
    )


def _write_and_die(spool: Path, steps: list[tuple[str, UsageEvent | None]]) -> int:
    """Run a writer process through `steps`, let it kill itself; returns its (dead) pid."""
    script = b"".join(
        b"rotate\n" if kind == "rotate" else kind.encode() + b" " + encode_event(e) + b"\n"
        for kind, e in steps
    )
    process = subprocess.Popen([sys.executable, "-c", WRITER, str(spool)], stdin=subprocess.PIPE)
    process.communicate(script, timeout=60)
    assert process.returncode == -9
    return process.pid


def _events(engine) -> dict[str, sa.Row]:
    with engine.connect() as conn:
        return {r.event_id: r for r in conn.execute(sa.select(events))}


def _pending(engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(pending_intents.c.event_id)).scalars())


def test_intent_lines_round_trip_and_are_told_apart_from_events():
    intent = _intent("r-9")
    line = encode_intent(intent)
    assert is_intent(line) and not is_intent(encode_event(_completion(intent)))
    assert decode_intent(line) == intent


def test_a_completed_intent_leaves_nothing_behind(seeded, tmp_path):
    intent = _intent()
    _write_and_die(tmp_path, [("intent", intent), ("event", _completion(intent))])
    report = Ingester(seeded).ingest_spool(tmp_path)
    assert (report.read, report.intents, report.inserted, report.interrupted, report.pending) == (
        1,
        1,
        1,
        0,
        0,
    )
    assert _events(seeded)[intent.event_id].outcome == "success"
    assert _pending(seeded) == []


def test_a_dead_writers_intent_becomes_an_interrupted_event_once(seeded, tmp_path):
    done, cut = _intent(), _intent(app="contract-review")
    _write_and_die(tmp_path, [("intent", done), ("event", _completion(done)), ("intent", cut)])
    report = Ingester(seeded).ingest_spool(tmp_path)  # seals the dead writer's open file
    assert (report.inserted, report.interrupted, report.pending) == (2, 1, 0)
    row = _events(seeded)[cut.event_id]
    assert (
        row.outcome,
        row.application,
        row.environment,
        row.model_requested,
        row.allocation_status,
        row.http_status,
    ) == ("interrupted", "contract-review", "production", "gpt-4o-mini", "allocated", None)
    with seeded.connect() as conn:
        cost = conn.execute(
            sa.select(cost_entries).where(cost_entries.c.event_id == cut.event_id)
        ).one()
        unpriced = conn.execute(
            sa.select(sa.func.sum(rollups_daily.c.unpriced_events)).where(
                rollups_daily.c.application == "contract-review"
            )
        ).scalar()
    assert (cost.status, cost.amount_pico, cost.flags) == ("unpriced", None, "usage_unknown")
    assert unpriced == 1  # unknown usage is unpriced, never 0

    # Replaying every file (a crash before the move, an operator's second run) adds nothing.
    for path in (tmp_path / "ingested").iterdir():
        shutil.copy(path, tmp_path / path.name)
    again = Ingester(seeded).ingest_spool(tmp_path)
    assert (again.inserted, again.duplicates, again.interrupted, again.pending) == (0, 1, 0, 0)
    assert len(_events(seeded)) == 2 and _pending(seeded) == []


def test_a_completion_in_a_later_file_wins(seeded, tmp_path):
    intent = _intent()
    _write_and_die(tmp_path, [("intent", intent), ("rotate", None), ("event", _completion(intent))])
    first, second = sorted(tmp_path.glob("events-*"))
    assert (first, second.name.endswith(".open")) == (sealed_files(tmp_path)[0], True)
    ingester = Ingester(seeded)
    # The first file alone: the intent is held, not interrupted, while the writer's later
    # file is still in the spool, although the writer is dead.
    ingester.ingest_lines(read_lines(first))
    assert _pending(seeded) == [intent.event_id]
    assert resolve_intents(seeded, ingester.ingest_events, spool=tmp_path) == (0, 1)
    assert intent.event_id not in _events(seeded)
    report = ingester.ingest_spool(tmp_path)
    assert (report.interrupted, report.pending) == (0, 0)
    assert _events(seeded)[intent.event_id].outcome == "success"


def test_an_ingester_judges_only_the_intents_of_its_own_spool(seeded, tmp_path):
    """Replicas with a spool each, one ledger: the held intents are the ledger's, but only
    a spool's own ingester can see its writers. Another replica's ingester, with its spool
    at the same path in its own container, must leave them alone, even once that writer is
    dead: its last file may not be read yet."""
    spool = tmp_path / "spool"
    intent = _intent()
    _write_and_die(spool, [("intent", intent), ("rotate", None), ("event", _completion(intent))])
    ingester = Ingester(seeded)
    ingester.ingest_lines(read_lines(sealed_files(spool)[0]))  # its ingester, mid-round
    # another replica: its own volume mounted at the same path
    spool.rename(tmp_path / "volume-a")
    spool.mkdir()
    for other in (spool, tmp_path / "elsewhere"):
        other.mkdir(exist_ok=True)
        report = ingester.ingest_spool(other)
        assert (report.interrupted, report.pending) == (0, 0)
        assert _pending(seeded) == [intent.event_id]
    spool.rmdir()
    (tmp_path / "volume-a").rename(spool)
    report = ingester.ingest_spool(spool)
    assert (report.inserted, report.interrupted, report.pending, report.rejected) == (1, 0, 0, [])
    assert _events(seeded)[intent.event_id].outcome == "success"


def test_a_running_writers_calls_in_flight_never_look_interrupted(seeded, tmp_path):
    intent = _intent()
    spool = Spool(tmp_path, max_age=3600)  # this process: a gateway that is still running
    spool.append_intent(intent)
    spool.close()  # sealed (a rotation), with the call still in flight
    for _ in range(2):
        report = Ingester(seeded).ingest_spool(tmp_path)
        assert (report.interrupted, report.pending) == (0, 1)
    assert _events(seeded) == {}
    spool.append(_completion(intent))  # the call ends; the spool opens its next file
    spool.close()
    report = Ingester(seeded).ingest_spool(tmp_path)
    assert (report.inserted, report.interrupted, report.pending) == (1, 0, 0)
    assert _events(seeded)[intent.event_id].outcome == "success"


def test_the_latest_intent_of_a_stream_carries_the_provider_request_id(seeded, tmp_path):
    intent = _intent()
    learnt = msgspec.structs.replace(intent, provider_request_id="2026100512000001")
    _write_and_die(tmp_path, [("intent", intent), ("rotate", None), ("intent", learnt)])
    report = Ingester(seeded).ingest_spool(tmp_path)
    assert report.interrupted == 1
    assert _events(seeded)[intent.event_id].provider_request_id == "2026100512000001"


def test_named_files_are_taken_as_all_a_stopped_writer_wrote(seeded, tmp_path):
    spool = tmp_path / "copy"
    intent = _intent()
    _write_and_die(spool, [("intent", intent)])
    report = Ingester(seeded).ingest_paths(
        [p.rename(p.with_name(p.name.removesuffix(".open"))) for p in spool.iterdir()]
    )
    assert (report.intents, report.interrupted, report.inserted) == (1, 1, 1)
    assert _events(seeded)[intent.event_id].outcome == "interrupted"


def test_a_torn_intent_is_rejected_not_interrupted(seeded, tmp_path):
    """A writer killed while appending an intent had not sent the call yet."""
    intent = _intent()
    (tmp_path / "events-20261005T120000000000Z-999999999-1.jsonl").write_bytes(
        encode_intent(intent)[:-20]
    )
    report = Ingester(seeded).ingest_spool(tmp_path)
    assert (report.interrupted, len(report.rejected)) == (0, 1)
    assert "truncated line" in report.rejected[0].error


def test_repricing_keeps_an_interrupted_event_unpriced(seeded, tmp_path):
    intent = _intent()
    _write_and_die(tmp_path, [("intent", intent)])
    assert Ingester(seeded).ingest_spool(tmp_path).interrupted == 1
    result = reprice(seeded, parse_period("2026-10"), actor="test")
    with seeded.connect() as conn:
        statuses = list(
            conn.execute(
                sa.select(cost_entries.c.status).where(cost_entries.c.event_id == intent.event_id)
            ).scalars()
        )
    assert statuses == ["unpriced"], result


@pytest.fixture(autouse=True)
def _child_sees_our_tree(monkeypatch):
    """The writer process imports the spendtrail under test."""
    src = str(Path(__file__).resolve().parent.parent / "src")
    monkeypatch.setenv("PYTHONPATH", src)


def test_a_completion_after_its_interrupted_event_is_rejected_not_lost(seeded, tmp_path):
    """Impossible by the orphan rule on one host; a spool shared by hosts could do it."""
    intent = _intent()
    _write_and_die(tmp_path, [("intent", intent)])
    assert Ingester(seeded).ingest_spool(tmp_path).interrupted == 1
    late = tmp_path / "events-20261005T120001000000Z-999999999-1.jsonl"
    late.write_bytes(encode_event(_completion(intent)) + b"\n")
    report = Ingester(seeded).ingest_spool(tmp_path)
    assert (report.inserted, report.duplicates, len(report.rejected)) == (0, 1, 1)
    assert report.rejected[0].line == 1 and report.rejected[0].source.endswith(late.name)
    assert "already holds as interrupted" in report.rejected[0].error
    assert _events(seeded)[intent.event_id].outcome == "interrupted"


def _unshare_works() -> bool:
    try:
        return subprocess.run(["unshare", "--pid", "--fork", "true"], timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


needs_pid_namespaces = pytest.mark.skipif(
    not _unshare_works(),
    reason="`unshare --pid --fork` does not run here (needs root or user namespaces): the "
    "writers cannot be made pid 1 as in containers",
)


def _pid_1_writer(spool: Path) -> subprocess.Popen:
    """A writer process that is pid 1 of a pid namespace of its own, as a gateway in a
    container is; it dies (SIGKILL) with the `unshare` process that started it."""
    return subprocess.Popen(
        ["unshare", "--pid", "--fork", "--kill-child", sys.executable, "-c", WRITER, str(spool)],
        stdin=subprocess.PIPE,
    )


def _send(writer: subprocess.Popen, steps: list[tuple[str, UsageEvent | None]]) -> None:
    writer.stdin.write(b"".join(
        b"rotate\n" if kind == "rotate" else kind.encode() + b" " + encode_event(e) + b"\n"
        for kind, e in steps))
    writer.stdin.flush()


def _until(condition, what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _lines(paths) -> int:
    return sum(len(path.read_bytes().splitlines()) for path in paths)


@needs_pid_namespaces
def test_writers_that_are_all_pid_1_are_told_apart(seeded, tmp_path):
    """A gateway in a container is pid 1, and so is its replacement after a restart: the
    orphan rule must see the first one stopped although a process with its pid runs (pid 1
    of this host, too), and the second one running."""
    spool = tmp_path / "spool"
    done, cut, flying = _intent(), _intent(app="contract-review"), _intent()
    first = _pid_1_writer(spool)
    _send(first, [("intent", done), ("event", _completion(done)), ("intent", cut)])
    _until(lambda: _lines(spool.glob("*.open")) == 3, "the first writer's lines")
    (dead_file,) = spool.glob("*.open")
    first.kill()  # SIGKILL; its pid-1 child is SIGKILLed with it
    first.wait(30)
    old = writer_of(dead_file.name)
    _until(lambda: not writer_running(spool, old), "the kernel to drop the killed one's lock")
    second = _pid_1_writer(spool)  # the restarted gateway: pid 1 again
    try:
        # a call in flight, its intent in a file the writer sealed (a rotation)
        _send(second, [("intent", flying), ("rotate", None)])
        _until(lambda: list(spool.glob("*.jsonl")), "the second writer's sealed file")
        (live_file,) = spool.glob("*.jsonl")
        new = writer_of(live_file.name)
        assert old.pid == new.pid == 1 and old.id != new.id

        report = Ingester(seeded).ingest_spool(spool)
        # the dead writer's open file was sealed and ingested, its cut call interrupted;
        # the running writer's call in flight is held, not interrupted
        assert (report.inserted, report.interrupted, report.pending) == (2, 1, 1)
        assert {e: r.outcome for e, r in _events(seeded).items()} == {
            done.event_id: "success", cut.event_id: "interrupted"}
        assert _pending(seeded) == [flying.event_id]

        _send(second, [("event", _completion(flying))])
        second.stdin.close()  # it ends without closing its spool
        second.wait(30)
    finally:
        second.kill()
        second.wait(30)
    _until(lambda: not writer_running(spool, new), "the second writer's lock to go")
    report = Ingester(seeded).ingest_spool(spool)
    assert (report.inserted, report.interrupted, report.pending, report.rejected) == (1, 0, 0, [])
    assert _events(seeded)[flying.event_id].outcome == "success"
    assert not list(spool.glob("writer-*.lock"))  # stopped writers' locks are removed


@needs_pid_namespaces
def test_an_ingester_that_sees_other_pids_leaves_a_running_writer_alone(
    seeded, ledger_url, tmp_path
):
    """An ingester in a container of its own sees none of the gateway's pids: a running
    writer must not look stopped to it (its open file sealed under it, its call in flight
    made `interrupted`)."""
    spool = tmp_path / "spool"
    writer = Spool(spool, max_age=3600)  # this process, running: a gateway with a call in flight
    intent = _intent()
    writer.append_intent(intent)
    ingest = subprocess.run(
        ["unshare", "--pid", "--fork", sys.executable, "-m", "spendtrail.cli.app", "ingest"],
        env={**os.environ, "SPENDTRAIL_DATABASE_URL": ledger_url,
             "SPENDTRAIL_SPOOL_DIR": str(spool), "SPENDTRAIL_HOME": str(tmp_path)},
        capture_output=True, text=True, timeout=120,
    )
    assert ingest.returncode == 0, ingest.stderr
    assert len(list(spool.glob("*.open"))) == 1  # not sealed under the writer
    assert _events(seeded) == {}
    writer.append(_completion(intent))
    writer.close()
    report = Ingester(seeded).ingest_spool(spool)
    assert (report.inserted, report.interrupted, report.pending) == (1, 0, 0)
    assert _events(seeded)[intent.event_id].outcome == "success"
