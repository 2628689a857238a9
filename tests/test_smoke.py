"""The smoke test against the provider simulator: the happy path leaves one allocated, priced
event; the invalid credential fails once with a 401 and leaves none; the run log is stored."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa
import typer
from typer.testing import CliRunner

from spendtrail.cli import evidence_cmd
from spendtrail.evidence.followups import list_follow_ups
from spendtrail.evidence.handoff import get_handoff, new_handoff, render_handoff
from spendtrail.evidence.sample import sample_notes
from spendtrail.evidence.smoke_log import latest_smoke_run
from spendtrail.evidence.store import store_checked
from spendtrail.gateway import load_keys
from spendtrail.ledger.schema import audit_log, events, smoke_runs
from spendtrail.simulator import SimulatorConfig, serve_in_thread
from spendtrail.smoke import SmokeOptions, run_smoke

runner = CliRunner()


@pytest.fixture(scope="module")
def simulator():
    with serve_in_thread(SimulatorConfig()) as url:
        yield url


def options(upstream: str, **overrides) -> SmokeOptions:
    values = {"upstream_url": upstream, "upstream_key": "sk-simulated-upstream-key",
              "application": "support-assistant", "environment": "staging",
              "workload": "eval", "operator": "platform-oncall"}
    return SmokeOptions(**{**values, **overrides})


def test_happy_and_error_paths(seeded, ledger_url, simulator, tmp_path):
    run = run_smoke(seeded, ledger_url, options(simulator), tmp_path)
    assert (run.happy_path_result, run.error_path_result, run.evidence_captured) == (
        "pass", "pass", True)
    assert run.decision == "proceed" and run.follow_up_owner is None and run.passed
    assert run.details["problems"] == []
    [event] = run.details["events"]
    assert event["allocation_status"] == "allocated" and event["cost_status"] == "priced"
    assert event["cost_pico"] > 0 and event["workload_class"] == "eval"
    assert run.details["error_path"]["status"] == 401
    assert "invalid gateway key" in run.details["error_path"]["error"]
    assert run.details["error_path"]["gateway_refusals"] == 1  # no retry
    with seeded.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(events)).scalar() == 1
        stored = latest_smoke_run(conn)
        assert stored is not None and stored.record() == run.record()
        keys = [k for k in load_keys(conn) if k.id == run.details["gateway_key"]]
        assert keys[0].revoked_at is not None  # the run's key does not outlive it
        actions = conn.execute(sa.select(audit_log.c.action).where(
            audit_log.c.object_type == "smoke_run")).scalars().all()
        assert actions == ["smoke.run"]
        assert list_follow_ups(conn) == []
        stored_text = json.dumps([list(map(str, row)) for table in (smoke_runs, audit_log)
                                  for row in conn.execute(sa.select(table))])
    assert "sk-simulated-upstream-key" not in stored_text  # the provider key is never stored


def test_unreachable_upstream_stops_with_a_follow_up(seeded, ledger_url, tmp_path):
    run = run_smoke(seeded, ledger_url, options("http://127.0.0.1:9/v1", timeout=5), tmp_path)
    assert run.happy_path_result == "fail" and not run.evidence_captured
    assert run.decision == "stop" and run.follow_up_owner == "platform lead"
    assert run.details["problems"][0].startswith("happy path: the request failed")
    with seeded.connect() as conn:
        [follow_up] = list_follow_ups(conn)
    assert (follow_up.origin, follow_up.origin_id, follow_up.routed_to) == (
        "smoke", run.run_id, "platform lead")


def test_cli_exits_non_zero_on_failure_and_reads_the_key_from_the_environment(
        seeded, cli_ledger, simulator, monkeypatch):
    monkeypatch.delenv("SPENDTRAIL_UPSTREAM_KEY", raising=False)
    monkeypatch.delenv("COMETAPI_KEY", raising=False)
    app = typer.Typer()
    app.command()(evidence_cmd.smoke)
    args = ["--upstream", simulator, "--application", "support-assistant",
            "--environment", "staging", "--workload", "eval", "--format", "json"]
    missing = runner.invoke(app, args)
    assert missing.exit_code == 2 and "COMETAPI_KEY" in missing.output
    monkeypatch.setenv("COMETAPI_KEY", "sk-simulated-upstream-key")
    ok = runner.invoke(app, args)
    assert ok.exit_code == 0, ok.output
    log = json.loads(ok.stdout)
    assert log["decision"] == "proceed" and log["operator"] == "ana"
    assert "sk-simulated-upstream-key" not in ok.output
    bad = runner.invoke(app, [*args[:1], "http://127.0.0.1:9/v1", *args[2:]])
    assert bad.exit_code == 1 and json.loads(bad.stdout)["decision"] == "stop"


def test_handoff_from_the_latest_smoke_test_reviews_and_reconciliation(
        seeded, ledger_url, simulator, tmp_path):
    run = run_smoke(seeded, ledger_url, options(simulator), tmp_path)
    with seeded.begin() as conn:
        store_checked(conn, sample_notes("2026-10", team_owner="search-summaries"), actor="ana")
        handoff = new_handoff(conn, actor="ana")
    document = handoff.document
    assert document["smoke_test"]["run_id"] == run.run_id
    assert f"smoke {run.run_id}: happy path pass" in document["verified"][0]
    assert any("error path pass" in line for line in document["verified"])
    assert any(line.endswith("missing_owner, shared_without_decision)")
               for line in document["not_verified"])
    assert "no reconciliation against the provider's bill is recorded" in document["not_verified"]
    assert document["decision"] == "review" and document["next_check_owner"] == "platform lead"
    text = render_handoff(handoff)
    for name in ("run_id", "reviewed_at", "operator", "source_urls_checked", "workload_tag",
                 "owner_tag", "environment", "happy_path_result", "error_path_result",
                 "evidence_captured", "decision", "follow_up_owner"):
        assert f"\n{name}: " in text
    assert handoff.findings == ()

    # The reconciliation capability's latest row, read whatever its other columns are.
    created = not sa.inspect(seeded).has_table("reconciliations")
    if created:
        with seeded.begin() as conn:
            conn.execute(sa.text("CREATE TABLE reconciliations (id VARCHAR(40) PRIMARY KEY, "
                                 "created_at TIMESTAMP, result VARCHAR(20))"))
    table = sa.Table("reconciliations", sa.MetaData(), autoload_with=seeded)
    values = {c.name: _filler(c.type) for c in table.c
              if not c.nullable and not (c.primary_key and c.type.python_type is int)}
    values |= {"created_at": datetime(2026, 11, 2, tzinfo=UTC), "result": "pass"}
    try:
        with seeded.begin() as conn:
            conn.execute(table.insert().values(**values))
            later = new_handoff(conn, actor="ana")
        assert any(line.startswith("reconciliation ") and line.endswith(": pass")
                   for line in later.document["verified"])
        assert later.id.endswith("-002")
        with seeded.connect() as conn:
            assert get_handoff(conn).id == later.id
            assert get_handoff(conn, handoff.id).document == document
    finally:
        with seeded.begin() as conn:
            conn.execute(sa.text("DROP TABLE reconciliations") if created
                         else table.delete())


def _filler(kind: sa.types.TypeEngine) -> object:
    """Some value of a column's type, for the NOT NULL columns the test does not care about."""
    python = kind.python_type
    if python is datetime:
        return datetime(2026, 11, 2, tzinfo=UTC)
    if python is date:
        return date(2026, 10, 1)
    return {str: "x", int: 0, bool: True}.get(python, "x")
