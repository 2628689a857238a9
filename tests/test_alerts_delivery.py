"""Alert delivery against real loopback receivers: Slack-shaped and HMAC-signed JSON to an
aiohttp server, e-mail to an aiosmtpd sink; retries with backoff (an injected sleep and
clock, so nothing waits), bounded attempts, scoped channels, and no secret in the ledger."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa
from alert_receivers import http_receiver, smtp_sink
from test_alerts import _budget, _spend
from typer.testing import CliRunner

from spendtrail.alerts import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    check_alerts,
    list_deliveries,
    parse_config,
)
from spendtrail.cli.app import app as cli
from spendtrail.ledger.schema import alert_deliveries, alerts
from spendtrail.reconcile import import_bill

AT = datetime(2026, 10, 8, 9, tzinfo=UTC)
SECRET = "hmac-key-Zq81LmT0pW2x"
SLACK_TOKEN = "R4nd0mSlackT0kenAbCdEfGh"


class Clock:
    """Each reading one second after the last."""

    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 9, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def _threshold_alert(engine, app="search-summaries", budget="search-monthly"):
    _budget(engine, budget, "0.0009", soft=(50,), value=app)
    _spend(engine, app, date(2026, 10, 5))


def _run(engine, config_text: str, kinds=("budget_threshold",), **kwargs):
    sleeps: list[float] = []
    result = check_alerts(
        engine,
        parse_config(config_text),
        now=AT,
        kinds=kinds,
        sleep=sleeps.append,
        clock=Clock(),
        **kwargs,
    )
    return result, sleeps


def _attempts(engine) -> list[tuple]:
    with engine.connect() as conn:
        return [(d.channel, d.attempt, d.status, d.response) for d in list_deliveries(conn)]


def _stored_text(engine) -> str:
    with engine.connect() as conn:
        rows = [*conn.execute(sa.select(alerts)), *conn.execute(sa.select(alert_deliveries))]
    return json.dumps([list(map(str, row)) for row in rows])


def test_slack_json_and_a_signed_webhook_reach_their_receivers(seeded):
    _threshold_alert(seeded)
    with http_receiver() as (url, receiver):
        config = f"""
channels:
  - {{name: finops, type: slack, url: "{url}/services/T0AB12CD/B0EF34GH/{SLACK_TOKEN}"}}
  - {{name: billing, type: webhook, url: "{url}/hook", secret_env: ALERT_HMAC}}
"""
        result, sleeps = _run(seeded, config, env={"ALERT_HMAC": SECRET})
        assert [(s.channel, s.status, s.attempts) for s in result.deliveries] == [
            ("finops", "delivered", 1),
            ("billing", "delivered", 1),
        ]
        [slack] = receiver.on(f"/services/T0AB12CD/B0EF34GH/{SLACK_TOKEN}")
        payload = json.loads(slack.body)
        assert payload["text"].startswith("budget search-monthly reached 50% of its limit")
        assert [block["type"] for block in payload["blocks"]] == [
            "header",
            "section",
            "section",
            "context",
        ]
        assert payload["blocks"][1]["text"] == {"type": "mrkdwn", "text": result.new[0].message}
        assert {"type": "mrkdwn", "text": "*threshold*\n50%"} in payload["blocks"][2]["fields"]
        [hook] = receiver.on("/hook")
        stamp, signature = hook.headers[TIMESTAMP_HEADER], hook.headers[SIGNATURE_HEADER]
        expected = hmac.new(SECRET.encode(), stamp.encode() + b"." + hook.body, hashlib.sha256)
        assert hmac.compare_digest(signature, f"sha256={expected.hexdigest()}")
        tampered = hmac.new(
            SECRET.encode(), stamp.encode() + b"." + hook.body + b" ", hashlib.sha256
        )
        assert not hmac.compare_digest(signature, f"sha256={tampered.hexdigest()}")
        body = json.loads(hook.body)
        assert (body["kind"], body["key"], body["owner"]["budget_owner"]) == (
            "budget_threshold",
            "budget_threshold:search-monthly:2026-10-01:50",
            "ana.ruiz",
        )
        assert sleeps == []
        again, _ = _run(seeded, config, env={"ALERT_HMAC": SECRET})  # nothing new, nothing sent
        assert (again.new, again.deliveries, len(receiver.seen)) == ([], [], 2)
    with seeded.connect() as conn:
        targets = {d.channel: d.target for d in list_deliveries(conn)}
    assert targets["finops"].endswith("/services/<redacted>/<redacted>/<redacted>")
    assert targets["billing"] == f"{url}/hook"
    stored = _stored_text(seeded)
    assert SECRET not in stored and SLACK_TOKEN not in stored and "T0AB12CD" not in stored


def test_a_receiver_failing_twice_is_retried_with_backoff(seeded):
    _threshold_alert(seeded)
    with http_receiver([503, 503]) as (url, receiver):
        config = f"""
delivery: {{attempts: 4, backoff_seconds: 0.5}}
channels: [{{name: ops, type: webhook, url: "{url}/ops"}}]
"""
        result, sleeps = _run(seeded, config)
    assert sleeps == [0.5, 1.0]
    assert len(receiver.seen) == 3
    assert [(s.status, s.attempts) for s in result.deliveries] == [("delivered", 3)]
    assert _attempts(seeded) == [
        ("ops", 1, "retrying", "HTTP 503 Service Unavailable"),
        ("ops", 2, "retrying", "HTTP 503 Service Unavailable"),
        ("ops", 3, "delivered", "HTTP 200"),
    ]
    with seeded.connect() as conn:
        times = [d.at for d in list_deliveries(conn)]
    assert times == sorted(times) and len(set(times)) == 3


def test_attempts_are_bounded_and_a_refusal_is_not_retried(seeded):
    _threshold_alert(seeded)
    with http_receiver([500] * 10) as (url, receiver):
        config = f"""
delivery: {{attempts: 3}}
channels:
  - {{name: down, type: webhook, url: "{url}/down"}}
  - {{name: signed, type: webhook, url: "{url}/signed", secret_env: ALERT_HMAC}}
"""
        result, sleeps = _run(seeded, config, env={})
        assert [(s.channel, s.status, s.attempts) for s in result.deliveries] == [
            ("down", "failed", 3),
            ("signed", "failed", 1),
        ]
        assert sleeps == [1.0, 2.0]
        assert [r.path for r in receiver.seen] == ["/down"] * 3  # no secret: nothing sent
        again, _ = _run(seeded, config, env={})
        assert again.deliveries == [] and len(receiver.seen) == 3  # given up for good
    assert _attempts(seeded)[-1] == (
        "signed",
        1,
        "failed",
        "the environment variable ALERT_HMAC is not set",
    )
    with http_receiver([404]) as (url, receiver):
        config = f"channels: [{{name: gone, type: webhook, url: '{url}/gone'}}]"
        result, sleeps = _run(seeded, config)
    assert [(s.status, s.attempts, s.response) for s in result.deliveries] == [
        ("failed", 1, "HTTP 404 Not Found")
    ]
    assert sleeps == [] and len(receiver.seen) == 1


def test_an_email_reaches_the_smtp_sink(seeded):
    _threshold_alert(seeded)
    with smtp_sink() as (port, sink):
        config = f"""
channels:
  - name: search-team
    type: email
    smtp_host: 127.0.0.1
    smtp_port: {port}
    from: spendtrail@example.com
    to: [ana.ruiz@example.com, finance@example.com]
"""
        result, _ = _run(seeded, config)
    assert [(s.status, s.response) for s in result.deliveries] == [
        ("delivered", "SMTP 250 Message accepted for delivery")
    ]
    [(envelope, message)] = sink.messages
    assert envelope.rcpt_tos == ["ana.ruiz@example.com", "finance@example.com"]
    assert envelope.mail_from == "spendtrail@example.com"
    assert message["Subject"] == (
        "[spendtrail] budget search-monthly reached 50% of its limit (2026-10)"
    )
    body = message.get_payload(decode=True).decode()
    assert result.new[0].message in body and "threshold: 50%" in body


def test_a_scoped_channel_receives_only_its_owners_alerts(seeded):
    _threshold_alert(seeded)
    _threshold_alert(seeded, app="contract-review", budget="contracts")
    _spend(seeded, "no-such-app", date(2026, 10, 5))  # a company-wide unallocated alert
    with http_receiver() as (url, receiver):
        config = f"""
channels:
  - {{name: search, type: webhook, url: "{url}/search", owner: {{application: search-summaries}}}}
  - {{name: enterprise, type: webhook, url: "{url}/ent", owner: {{business_unit: enterprise}}}}
  - {{name: consumer-budgets, type: webhook, url: "{url}/con", owner: {{business_unit: consumer}},
      kinds: [budget_hard_limit]}}
  - {{name: finops, type: webhook, url: "{url}/all"}}
"""
        result, _ = _run(seeded, config, kinds=("budget_threshold", "unallocated"))
        keys = {
            path: [json.loads(r.body)["key"] for r in receiver.on(path)]
            for path in ("/search", "/ent", "/con", "/all")
        }
    assert len(result.new) == 3
    assert keys["/search"] == ["budget_threshold:search-monthly:2026-10-01:50"]
    assert keys["/ent"] == ["budget_threshold:contracts:2026-10-01:50"]
    assert keys["/con"] == []
    assert sorted(keys["/all"]) == sorted(a.key for a in result.new)


def test_the_commands_check_list_and_show_deliveries(cli_ledger, tmp_path, monkeypatch):
    from factories import seed_books

    with cli_ledger.begin() as conn:
        seed_books(conn, tmp_path)
    _threshold_alert(cli_ledger)
    runner = CliRunner()
    with http_receiver() as (url, receiver):
        path = tmp_path / "alerts.yaml"
        path.write_text(
            f"channels:\n  - {{name: ops, type: slack, url: '{url}/services/"
            f"T0AB12CD/B0EF34GH/{SLACK_TOKEN}'}}\n"
        )
        monkeypatch.setenv("SPENDTRAIL_ALERTS_FILE", str(path))
        done = runner.invoke(
            cli, ["alerts", "check", "--at", "2026-10-08", "--kind", "budget_threshold"]
        )
        assert done.exit_code == 0, done.output
        assert "alert 1 budget_threshold: budget 'search-monthly'" in done.stdout
        assert "alert 1 -> ops: delivered after 1 attempt (HTTP 200)" in done.stdout
        again = runner.invoke(
            cli, ["alerts", "check", "--at", "2026-10-08", "--kind", "budget_threshold"]
        )
        assert "1 conditions hold, 0 new alerts, 0 deliveries" in again.stdout
        assert len(receiver.seen) == 1
    listed = runner.invoke(
        cli, ["alerts", "list", "--owner", "cost-center:CC-100", "--format", "json"]
    )
    assert [a["key"] for a in json.loads(listed.stdout)] == [
        "budget_threshold:search-monthly:2026-10-01:50"
    ]
    other = runner.invoke(cli, ["alerts", "list", "--owner", "business-unit:enterprise"])
    assert other.stdout.strip() == "no alerts"
    shown = runner.invoke(cli, ["alerts", "deliveries", "--format", "json"])
    [row] = json.loads(shown.stdout)
    assert (row["channel"], row["attempt"], row["status"], row["response"]) == (
        "ops",
        1,
        "delivered",
        "HTTP 200",
    )
    channels = runner.invoke(cli, ["alerts", "channels"])
    assert "<redacted>" in channels.stdout
    assert SLACK_TOKEN not in shown.stdout + channels.stdout + done.stdout
    bad = runner.invoke(cli, ["alerts", "check", "--kind", "budget"])
    assert bad.exit_code == 2 and "unknown kind budget" in bad.stderr


def test_reconcile_daily_sends_a_failed_day_to_the_alert_channels(
    cli_ledger, tmp_path, monkeypatch
):
    """Day 5 is billed 250 quota (0.0005 USD) for a call the ledger prices at 0.00045 USD."""
    from factories import seed_books

    with cli_ledger.begin() as conn:
        seed_books(conn, tmp_path)
    _spend(cli_ledger, "search-summaries", date(2026, 10, 5), rid="r5")
    at = int(datetime(2026, 10, 5, 12, tzinfo=UTC).timestamp())
    row = {
        "id": 1,
        "created_at": at,
        "type": 2,
        "token_name": "k",
        "model_name": "gpt-4o-mini",
        "quota": 250,
        "prompt_tokens": 1000,
        "completion_tokens": 500,
        "request_id": "r5",
        "is_stream": False,
        "group": "default",
    }
    bill = tmp_path / "day5.json"
    bill.write_text(json.dumps({"data": {"items": [row], "total": 1}}))
    import_bill(cli_ledger, bill, "cometapi-json", actor="ana")
    runner = CliRunner()
    with http_receiver() as (url, receiver):
        path = tmp_path / "alerts.yaml"
        path.write_text(f"channels: [{{name: ops, type: webhook, url: '{url}/ops'}}]\n")
        monkeypatch.setenv("SPENDTRAIL_ALERTS_FILE", str(path))
        done = runner.invoke(
            cli, ["reconcile", "--daily", "--bill-source", "cometapi", "--reviewer", "Ben"]
        )
        assert done.exit_code == 1, done.output
        assert "reconcile: 2026-10-05 cometapi variance" in done.stderr
        [hook] = receiver.seen
    sent = json.loads(hook.body)
    assert (sent["kind"], sent["key"]) == ("reconciliation_failed", "reconciliation_failed:1")
    assert "alert 1 -> ops: delivered after 1 attempt (HTTP 200)" in done.stdout
