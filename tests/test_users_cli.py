"""`spendtrail users add|list|disable` and `spendtrail tokens create|list|revoke`: passwords
kept only as argon2 hashes, tokens printed once and kept as SHA-256, each change audited."""

from __future__ import annotations

import json

import sqlalchemy as sa
from typer.testing import CliRunner

from spendtrail.cli.app import app
from spendtrail.ledger.schema import api_tokens, audit_log, users
from spendtrail.ledger.users import authenticate, token_user

runner = CliRunner()
PASSWORD = "a long enough password"


def test_users_and_tokens(cli_ledger, monkeypatch):
    monkeypatch.setenv("SPENDTRAIL_NEW_PASSWORD", PASSWORD)
    added = runner.invoke(
        app,
        [
            "users",
            "add",
            "lee",
            "--role",
            "owner",
            "--scope",
            "application:search-summaries",
            "--scope",
            "cost-center:CC-100",
        ],
    )
    assert added.exit_code == 0, added.output
    assert "sees application:search-summaries, cost-center:CC-100" in added.output
    refused = runner.invoke(app, ["users", "add", "kim", "--role", "owner"])
    assert refused.exit_code == 2 and "needs --scope" in refused.output
    assert runner.invoke(app, ["users", "add", "lee", "--role", "viewer"]).exit_code == 2
    bad_role = runner.invoke(app, ["users", "add", "kim", "--role", "boss"])
    assert bad_role.exit_code == 2 and "admin, finance, owner, viewer" in bad_role.output

    with cli_ledger.connect() as conn:
        stored = conn.execute(sa.select(users.c.password_hash)).scalar_one()
        assert stored.startswith("$argon2") and PASSWORD not in stored
        assert authenticate(conn, "lee", PASSWORD) is not None
        assert authenticate(conn, "lee", PASSWORD + "!") is None

    made = runner.invoke(app, ["tokens", "create", "--user", "lee", "--name", "nightly"])
    assert made.exit_code == 0, made.output
    secret = made.output.strip().splitlines()[-1]
    assert secret.startswith("stt_")
    listed = json.loads(runner.invoke(app, ["tokens", "list", "--format", "json"]).output)
    assert [t["user"] for t in listed] == ["lee"] and secret not in str(listed)
    with cli_ledger.connect() as conn:
        assert secret not in str(conn.execute(sa.select(api_tokens)).all())
        assert token_user(conn, secret).name == "lee"

    assert runner.invoke(app, ["tokens", "revoke", listed[0]["id"]]).exit_code == 0
    with cli_ledger.connect() as conn:
        assert token_user(conn, secret) is None
    assert runner.invoke(app, ["users", "disable", "lee", "--reason", "left"]).exit_code == 0
    rows = json.loads(runner.invoke(app, ["users", "list", "--format", "json"]).output)
    assert rows[0]["disabled"] is True and rows[0]["scope"] == (
        "application:search-summaries cost-center:CC-100"
    )
    with cli_ledger.connect() as conn:
        assert authenticate(conn, "lee", PASSWORD) is None
        actions = conn.execute(
            sa.select(audit_log.c.action, audit_log.c.actor).order_by(audit_log.c.id)
        ).all()
    assert actions == [
        ("users.add", "ana"),
        ("tokens.create", "ana"),
        ("tokens.revoke", "ana"),
        ("users.disable", "ana"),
    ]
    assert PASSWORD not in str(actions) and secret not in str(actions)
