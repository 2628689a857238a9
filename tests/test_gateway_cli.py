"""`spendtrail keys` and `spendtrail gateway`, on a Typer app assembled here the way the
main CLI mounts them, against a real ledger on both backends."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import openai
import sqlalchemy as sa
import typer
from factories import journaled_events, save_example_registry
from gateway_upstream import UpstreamDouble
from typer.testing import CliRunner

from spendtrail.cli.gateway_cmd import gateway, keys_app
from spendtrail.ledger.db import make_engine, migrate
from spendtrail.ledger.schema import audit_log, events, gateway_keys

app = typer.Typer()
app.add_typer(keys_app, name="keys")
app.command("gateway")(gateway)
runner = CliRunner()



def load_example_registry(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        save_example_registry(conn)


def create(*args: str) -> tuple[str, str]:
    """`keys create`; returns (key value, key id)."""
    result = runner.invoke(app, ["keys", "create", *args])
    assert result.exit_code == 0, result.output
    value = result.stdout.strip()
    return value, result.stderr.split("created gateway key ")[1].split()[0]


def test_create_needs_a_registry_and_a_known_application(cli_ledger):
    result = runner.invoke(app, ["keys", "create", "--application", "support-assistant"])
    assert result.exit_code == 2
    assert "no registry loaded" in result.stderr
    load_example_registry(cli_ledger)
    result = runner.invoke(app, ["keys", "create", "--application", "support-asistant"])
    assert result.exit_code == 2
    assert "--application: 'support-asistant' is not in the registry" in result.stderr
    result = runner.invoke(app, ["keys", "create", "--application", "eval-harness",
                                 "--environment", "production"])
    assert result.exit_code == 2
    assert "allowed: development, staging" in result.stderr


def test_create_shows_the_key_once_and_stores_its_hash(cli_ledger):
    load_example_registry(cli_ledger)
    value, key_id = create("--application", "support-assistant", "--environment", "staging",
                           "--reason", "onboarding")
    assert value.startswith("sk-st-") and len(value) > 40
    with cli_ledger.connect() as conn:
        row = conn.execute(sa.select(gateway_keys)).mappings().one()
        audit = conn.execute(sa.select(audit_log).where(
            audit_log.c.object_type == "gateway_key")).mappings().one()
    assert row["id"] == key_id
    assert row["key_hash"] == hashlib.sha256(value.encode()).hexdigest()
    assert value.startswith(row["key_prefix"]) and len(row["key_prefix"]) < 16
    assert (row["application"], row["environment"], row["created_by"]) == (
        "support-assistant", "staging", "ana")
    assert (audit["action"], audit["actor"], audit["reason"]) == (
        "gateway_key.create", "ana", "onboarding")
    assert value not in json.dumps(dict(audit), default=str)
    assert row["key_hash"] not in audit["after"]

    listed = runner.invoke(app, ["keys", "list", "--format", "json"])
    [entry] = json.loads(listed.stdout)
    assert (entry["id"], entry["active"], entry["environment"]) == (key_id, True, "staging")
    assert value not in listed.stdout
    table = runner.invoke(app, ["keys", "list"], env={"COLUMNS": "200"})
    assert row["key_prefix"] in table.stdout and "active" in table.stdout


def test_revoke_and_rotate_are_audited(cli_ledger):
    load_example_registry(cli_ledger)
    _, first = create("--application", "contract-review")
    result = runner.invoke(app, ["keys", "rotate", first, "--reason", "quarterly"])
    assert result.exit_code == 0, result.output
    new_value = result.stdout.strip()
    assert new_value.startswith("sk-st-")
    second = result.stderr.split(" to ")[1].split()[0]
    result = runner.invoke(app, ["keys", "revoke", second, "--reason", "leaked"])
    assert result.exit_code == 0, result.output
    assert f"revoked {second}" in result.stdout
    result = runner.invoke(app, ["keys", "rotate", first])
    assert result.exit_code == 2 and "is revoked" in result.stderr
    result = runner.invoke(app, ["keys", "revoke", "gk_nope"])
    assert result.exit_code == 2 and "no gateway key with id 'gk_nope'" in result.stderr

    listed = {k["id"]: k for k in json.loads(
        runner.invoke(app, ["keys", "list", "--format", "json"]).stdout)}
    assert listed[second]["rotated_from"] == first
    assert not listed[first]["active"] and not listed[second]["active"]
    with cli_ledger.connect() as conn:
        audit = audit_log.c
        actions = conn.execute(sa.select(audit.action, audit.object_id, audit.reason)
                               .where(audit.object_type == "gateway_key")
                               .order_by(audit.id)).all()
    assert [tuple(a) for a in actions] == [
        ("gateway_key.create", first, ""),
        ("gateway_key.create", second, "quarterly"),
        ("gateway_key.revoke", first, "quarterly"),
        ("gateway_key.revoke", second, "leaked"),
    ]


def test_gateway_refuses_to_start_without_an_upstream_key(monkeypatch):
    monkeypatch.delenv("SPENDTRAIL_UPSTREAM_KEY", raising=False)
    monkeypatch.delenv("COMETAPI_KEY", raising=False)
    result = runner.invoke(app, ["gateway"])
    assert result.exit_code == 2
    assert "set SPENDTRAIL_UPSTREAM_KEY or COMETAPI_KEY" in result.stderr
    monkeypatch.setenv("COMETAPI_KEY", "sk-comet-secret-value")
    result = runner.invoke(app, ["gateway", "--policy", "production=block"])
    assert result.exit_code == 2
    assert "--policy: expected ENV=reject|quarantine, got 'production=block'" in result.stderr
    assert "sk-comet-secret-value" not in result.output


def test_gateway_command_serves_and_seals_the_spool_on_exit(tmp_path):
    """The real command in a subprocess: the way an operator runs it."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    engine = make_engine(url)
    migrate(engine)
    load_example_registry(engine)
    engine.dispose()
    env = {**os.environ, "SPENDTRAIL_DATABASE_URL": url, "SPENDTRAIL_HOME": str(tmp_path),
           "SPENDTRAIL_UPSTREAM_KEY": "sk-upstream-for-the-cli-test"}
    double = UpstreamDouble("sk-upstream-for-the-cli-test")
    upstream = double.start()
    key = subprocess.run(
        [sys.executable, "-c", _SCRIPT, "keys", "create", "--application", "support-assistant",
         "--environment", "production"], env=env, capture_output=True, text=True, check=True,
    ).stdout.strip()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-c", _SCRIPT, "gateway", "--upstream", upstream, "--port", str(port),
         "--policy", "staging=reject"], env=env, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                    assert json.loads(r.read())["status"] == "ready"
                    break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key)
        reply = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content == "Hello world!"
    finally:
        server.send_signal(signal.SIGTERM)  # as a service manager stops it: cleanly
        try:
            _, stderr = server.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()  # never left running, whatever failed
            server.communicate()
            raise
        finally:
            double.stop()
    assert "staging=reject" in stderr and "sk-upstream-for-the-cli-test" not in stderr
    # On the way out the gateway sealed its spool file and ingested it into the ledger.
    assert not list((tmp_path / "spool").glob("*.jsonl*"))
    [sealed] = (tmp_path / "spool" / "ingested").glob("*.jsonl")
    [event] = journaled_events(sealed.parent)
    assert (event.outcome, event.context.application) == ("success", "support-assistant")
    engine = make_engine(url)
    with engine.connect() as conn:
        stored = conn.execute(sa.select(events.c.event_id, events.c.application)).all()
    engine.dispose()
    assert [tuple(row) for row in stored] == [(event.event_id, "support-assistant")]


_SCRIPT = """
import sys, typer
from spendtrail.cli.gateway_cmd import gateway, keys_app
app = typer.Typer()
app.add_typer(keys_app, name="keys")
app.command("gateway")(gateway)
app()
"""
