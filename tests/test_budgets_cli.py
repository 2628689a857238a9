"""`spendtrail budgets` set / list / show / delete, with audit rows, on both backends."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from factories import event
from typer.testing import CliRunner

from spendtrail.cli.budgets_cmd import app
from spendtrail.ledger.ingest import Ingester
from spendtrail.ledger.schema import audit_log, budgets

runner = CliRunner()


@pytest.fixture
def cli_ledger(seeded, cli_ledger):
    """The CLI pointed at a ledger holding the example registry and prices."""
    return cli_ledger

def audit(engine):
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(audit_log.c.actor, audit_log.c.action, audit_log.c.object_id,
                      audit_log.c.before, audit_log.c.after, audit_log.c.reason)
            .where(audit_log.c.object_type == "budget")
            .order_by(audit_log.c.id)
        ).all()
    return [(actor, action, oid, before and json.loads(before), after and json.loads(after),
             reason) for actor, action, oid, before, after, reason in rows]


def invoke(*args):
    return runner.invoke(app, list(args))


def test_set_list_show_delete_with_audit(cli_ledger):
    created = invoke("set", "search-monthly", "--application", "search-summaries",
                     "--period", "month", "--limit", "0.001 USD", "--soft", "50,80",
                     "--owner", "ana.ruiz", "--reason", "FY27 plan, FIN-7")
    assert created.exit_code == 0, created.output
    assert "created: budget search-monthly" in created.output

    changed = invoke("set", "search-monthly", "--limit", "0.002 USD", "--reason", "more room")
    assert changed.exit_code == 0, changed.output
    assert "changed:" in changed.output
    unchanged = invoke("set", "search-monthly", "--limit", "0.002 USD")
    assert "unchanged:" in unchanged.output

    rows = audit(cli_ledger)
    assert [(a, action, oid, reason) for a, action, oid, _, _, reason in rows] == [
        ("ana", "create", "search-monthly", "FY27 plan, FIN-7"),
        ("ana", "update", "search-monthly", "more room"),
    ]
    before, after = rows[1][3], rows[1][4]
    assert (before["limit_units"], after["limit_units"]) == (1_000_000_000, 2_000_000_000)
    assert after["thresholds"] == "50,80" and after["owner"] == "ana.ruiz"

    listed = invoke("list", "--format", "json")
    assert listed.exit_code == 0, listed.output
    [row] = json.loads(listed.output)
    assert (row["scope"], row["period"], row["limit"], row["unit"], row["soft"],
            row["hard"]) == ("application=search-summaries", "month", "0.002", "USD",
                             "50%,80%", "yes")

    # 0.0009 USD spent on 2026-10-05 (factories.AT): 45% of the limit.
    Ingester(cli_ledger).ingest_events([event(), event()])
    shown = invoke("show", "search-monthly", "--at", "2026-10-20", "--format", "json")
    assert shown.exit_code == 0, shown.output
    [state] = json.loads(shown.output)
    assert (state["spent"], state["used"], state["state"]) == ("0.0009", "45%", "ok")
    assert state["period"] == "month 2026-10 (2026-10-01..2026-10-31)"
    november = json.loads(invoke("show", "search-monthly", "--at", "2026-11-02",
                                 "--format", "json").output)[0]
    assert (november["spent"], november["state"]) == ("0", "ok")

    missing_reason = invoke("delete", "search-monthly", "--reason", " ")
    assert missing_reason.exit_code == 2
    deleted = invoke("delete", "search-monthly", "--reason", "project closed")
    assert deleted.exit_code == 0, deleted.output
    with cli_ledger.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(budgets)).scalar_one() == 0
    last = audit(cli_ledger)[-1]
    assert last[1:3] == ("delete", "search-monthly") and last[4] is None
    assert last[3]["limit_units"] == 2_000_000_000 and last[5] == "project closed"
    assert invoke("show", "search-monthly").exit_code == 2


def test_custom_token_budget_and_bad_input(cli_ledger):
    ok = invoke("set", "cc-sprint", "--cost-center", "CC-100", "--period", "custom",
                "--start", "2026-10-01", "--end", "2026-10-14", "--limit", "3000 tokens",
                "--no-hard", "--environment", "production")
    assert ok.exit_code == 0, ok.output
    assert "cost_center=CC-100, environment=production, 2026-10-01..2026-10-14" in ok.output
    Ingester(cli_ledger).ingest_events([event(), event(env="staging")])
    [state] = json.loads(invoke("show", "cc-sprint", "--at", "2026-10-05", "--format",
                                "json").output)
    assert (state["spent"], state["unit"], state["used"]) == ("1500", "tokens", "50%")
    last_day = json.loads(invoke("show", "cc-sprint", "--at", "2026-10-14T23:59", "--format",
                               "json").output)[0]
    assert last_day["state"] == "ok"
    outside = json.loads(invoke("show", "cc-sprint", "--at", "2026-10-15", "--format",
                                "json").output)[0]
    assert outside["state"] == "inactive"

    for args, message in [
        (("--application", "no-such-app", "--period", "month", "--limit", "5 USD"),
         "application 'no-such-app' is not in the registry"),
        (("--application", "search-summaries", "--limit", "5 USD"), "give --period"),
        (("--application", "search-summaries", "--period", "month", "--limit", "5 dollars"),
         "expected an amount and a currency"),
        (("--application", "a", "--cost-center", "b"), "give one scope"),
        (("--business-unit", "consumer", "--period", "custom", "--limit", "5 USD"),
         "a custom period needs a start and an end day"),
    ]:
        result = invoke("set", "bad", *args)
        assert result.exit_code == 2, result.output
        assert message in result.output
    assert invoke("delete", "nope", "--reason", "x").exit_code == 2
