"""`spendtrail budgets review`: each decision path, the held-out section and the fields in every
format, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime

import pytest
import typer
from factories import event
from typer.testing import CliRunner

from spendtrail.budgets import Budget, save_budget
from spendtrail.cli.budget_review_cmd import review
from spendtrail.evidence.budget_review import DECISIONS, RULES, review_budgets
from spendtrail.evidence.followups import list_follow_ups
from spendtrail.evidence.smoke_log import SmokeRun, save_smoke_run
from spendtrail.ledger.ingest import Ingester
from spendtrail.periods import parse_period

OCT = parse_period("2026-10")
CHECKED = date(2026, 10, 1)  # the price sheet's checked_at (tests/factories.py)
LATER = date(2026, 10, 20)
SEED_FIELDS = ("review_date", "reviewer_role", "source_urls_checked", "request_time_utc",
               "workload_label", "owner_group", "environment", "request_result",
               "usage_evidence_present", "pricing_reference_checked", "allocation_rule",
               "unit_metric_name", "decision", "follow_up_owner")
runner = CliRunner()
cli = typer.Typer()
cli.command()(review)


def budget(budget_id, limit_usd, app="search-summaries", thresholds=()):
    return Budget(id=budget_id, scope="application", scope_value=app, period="month",
                  limit_units=int(limit_usd * 10**12), currency="USD", thresholds=thresholds)


def setup(engine, *budgets, items=()):
    with engine.begin() as conn:
        for b in budgets:
            save_budget(conn, b, actor="test", reason="test")
    if items:
        Ingester(engine).ingest_events(list(items))


def run(engine, review_date=CHECKED):
    with engine.begin() as conn:
        result = review_budgets(conn, OCT, review_date=review_date, actor="test")
    return {row.budget_id: row for row in result.rows}, result


def test_rules_are_listed_most_severe_first():
    # A row takes its decision and follow-up owner from its first finding in table order.
    severity = [DECISIONS.index(rule.decision) for rule in RULES]
    assert severity == sorted(severity, reverse=True)
    assert len({rule.code for rule in RULES}) == len(RULES)


def test_proceed_when_evidence_priced_and_checked_today(seeded):
    # one event costs 0.00045 USD
    setup(seeded, budget("ok", 1), items=[event()])
    rows, _ = run(seeded)
    row = rows["ok"]
    assert row.decision == "proceed" and row.follow_up_owner is None and row.reasons == ()
    assert row.usage_evidence_present and row.pricing_reference_checked
    assert row.owner_group == "application=search-summaries"
    assert row.workload_label == "batch" and row.environment == "production"
    assert row.unit_metric_name == "USD cost per month"
    assert row.allocation_rule.startswith("owner map: registry v1")
    assert "https://api.cometapi.com/pricing" in row.source_urls_checked
    assert row.request_time_utc is not None and row.events == 1
    with seeded.connect() as conn:
        assert list_follow_ups(conn) == []


def test_review_when_pricing_not_checked_on_the_review_day(seeded):
    setup(seeded, budget("ok", 1), items=[event()])
    row = run(seeded, review_date=LATER)[0]["ok"]
    assert row.decision == "review" and not row.pricing_reference_checked
    assert row.follow_up_owner == "finance partner"
    assert "checked on 2026-10-20" in row.reasons[0]


def test_review_over_soft_threshold(seeded):
    setup(seeded, budget("soft", 0.0008, thresholds=(50,)), items=[event()])
    row = run(seeded)[0]["soft"]
    assert (row.decision, row.state, row.follow_up_owner) == ("review", "soft", "owner")
    assert "soft threshold 50%" in row.reasons[0]


def test_review_when_unpriced_usage(seeded):
    setup(seeded, budget("ok", 1), items=[event(), event(model="no-such-model")])
    row = run(seeded)[0]["ok"]
    assert row.decision == "review" and row.unpriced_events == 1
    assert any("unpriced" in r for r in row.reasons)


def test_stop_when_exceeded_and_follow_up_opened_once(seeded):
    setup(seeded, budget("tight", 0.0004), items=[event()])
    row = run(seeded)[0]["tight"]
    assert (row.decision, row.state) == ("stop", "exceeded")
    assert row.reasons[0].startswith("budget exceeded")
    run(seeded)  # a second review does not queue the same question twice
    with seeded.connect() as conn:
        [item] = list_follow_ups(conn)
    assert (item.origin, item.origin_id, item.routed_to) == (
        "review", "budget-review:tight:2026-10", "owner")
    assert item.id == row.follow_up_id


def test_stop_when_request_evidence_missing(seeded):
    setup(seeded, budget("idle", 1, app="support-assistant"))
    row = run(seeded)[0]["idle"]
    assert row.decision == "stop" and not row.usage_evidence_present
    assert row.request_time_utc is None and row.workload_label == "-"
    assert "no request evidence" in row.reasons[0]


def test_quarantined_usage_is_held_out_of_team_budgets(seeded):
    setup(seeded, budget("ok", 1), items=[event(), event(app="ghost-app")])
    rows, result = run(seeded)
    assert rows["ok"].events == 1 and rows["ok"].spent == "0.00045 USD"
    [held] = result.held_out
    assert held.captured_application == "ghost-app" and held.events == 1
    assert held.amounts == {"USD": 450_000_000} and held.reasons
    assert held.record()["amount"] == "0.00045 USD"


@pytest.mark.parametrize("fmt", ["json", "csv", "md", "table"])
def test_cli_formats_carry_every_field(seeded, cli_ledger, fmt):
    setup(seeded, budget("ok", 1), items=[event(), event(app="ghost-app")])
    out = runner.invoke(cli, ["--period", "2026-10", "--review-date", "2026-10-01",
                              "--reviewer-role", "finance partner", "--format", fmt],
                        terminal_width=400)
    assert out.exit_code == 0, out.output
    if fmt == "json":
        data = json.loads(out.output)
        [row] = data["rows"]
        assert set(SEED_FIELDS) <= set(row)
        assert (row["decision"], row["reviewer_role"]) == ("proceed", "finance partner")
        assert row["usage_evidence_present"] == "yes"
        assert row["pricing_reference_checked"] == "yes"
        assert data["held_out"][0]["captured_application"] == "ghost-app"
    elif fmt == "csv":
        budgets_block, held_block = out.output.split("\n\n")
        [row] = list(csv.DictReader(io.StringIO(budgets_block)))
        assert set(SEED_FIELDS) <= set(row) and row["decision"] == "proceed"
        [held] = list(csv.DictReader(io.StringIO(held_block)))
        assert held["captured_application"] == "ghost-app" and held["amount"] == "0.00045 USD"
    elif fmt == "md":
        assert "## Held out of team budgets" in out.output
        header = next(line for line in out.output.splitlines() if "review_date" in line)
        assert all(f" {name} |" in header for name in SEED_FIELDS)
        assert "ghost-app" in out.output
    else:
        assert all(name.replace("_", " ") in out.output for name in SEED_FIELDS)
        assert "Held out of team budgets" in out.output and "ghost-app" in out.output


def test_cli_refuses_a_period_that_is_not_a_month(cli_ledger):
    out = runner.invoke(cli, ["--period", "2026-10-05"])
    assert out.exit_code == 2 and "YYYY-MM" in out.output


def smoke_run(happy):
    return SmokeRun(run_id="smoke-test-1", reviewed_at=datetime(2026, 10, 1, 9, tzinfo=UTC),
                    operator="ana", source_urls_checked=("https://apidoc.cometapi.com/",),
                    workload_tag="batch", owner_tag="search-summaries",
                    environment="production", happy_path_result=happy,
                    error_path_result="pass", evidence_captured=happy == "pass",
                    decision="proceed" if happy == "pass" else "stop",
                    follow_up_owner=None, upstream_url="http://sim", details={})


@pytest.mark.parametrize(("happy", "decision"), [("pass", "proceed"), ("fail", "review")])
def test_latest_smoke_run_is_request_evidence(seeded, happy, decision):
    setup(seeded, budget("ok", 1), items=[event()])
    with seeded.begin() as conn:
        save_smoke_run(conn, smoke_run(happy))
    row = run(seeded)[0]["ok"]
    assert f"smoke smoke-test-1: happy path {happy}" in row.request_result
    assert row.decision == decision
    if happy == "fail":
        assert row.follow_up_owner == "platform lead"


def test_token_budget_on_a_cost_center_and_shared_pool_rule(seeded):
    tokens = Budget(id="cc-tokens", scope="cost_center", scope_value="CC-100", period="month",
                    limit_units=10_000, environment="production")
    pool = budget("pool", 0.0004, app="platform-shared")
    setup(seeded, tokens, pool, items=[event(), event(app="platform-shared")])
    rows = run(seeded)[0]
    assert rows["cc-tokens"].unit_metric_name == "input+output tokens per month"
    assert rows["cc-tokens"].owner_group == "cost_center=CC-100"
    assert (rows["cc-tokens"].spent, rows["cc-tokens"].decision) == ("1,500 tokens", "proceed")
    assert rows["pool"].allocation_rule.startswith("shared-cost rule: pool platform-shared")
    assert (rows["pool"].decision, rows["pool"].follow_up_owner) == ("stop", "platform lead")
