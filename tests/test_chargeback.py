"""The chargeback statement on the shared books (several owners, a shared pool split by the
example rules, an unpriced model, quarantined usage) with a budget and a reconciliation, on
SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from factories import ROOT
from test_allocation_helpers import FULL, MINI
from test_reconcile import _bill, _row
from typer.testing import CliRunner

from spendtrail.allocation.exceptions import assign, group_id
from spendtrail.allocation.rules import load_rules, parse_rules
from spendtrail.budgets import Budget, save_budget
from spendtrail.cli.report_cmd import app
from spendtrail.periods import parse_period
from spendtrail.reconcile import reconcile
from spendtrail.reports.chargeback import build_statement, parse_scope, to_csv, to_json
from spendtrail.reports.render_html import to_html
from spendtrail.reports.statement_view import to_markdown

pytest_plugins = ("test_allocation_helpers",)  # the `books` fixture

RULES = ROOT / "examples" / "shared-cost-rules.yaml"
OCTOBER = parse_period("2026-10")
# October's priced calls (BOOKS): 8 gpt-4o-mini and 2 gpt-4o, in pico-USD.
OCTOBER_TOTAL = 8 * MINI + 2 * FULL
SECTIONS = ("Charges by application", "Roll-up by business unit", "Roll-up by cost center",
            "Roll-up by budget owner", "By model", "By environment", "By workload",
            "Shared costs received", "Shared pool cost not allocated", "Quarantined usage",
            "Unpriced calls by model", "Budgets", "Allocation coverage", "Reconciliation",
            "Price sources used", "Tie-out", "What this statement does not assert")


@pytest.fixture
def books_with_budget(books):
    with books.begin() as conn:
        save_budget(conn, Budget(id="search-oct", scope="application",
                                 scope_value="search-summaries", period="month",
                                 limit_units=10**9, currency="USD"),
                    actor="test", reason="chargeback test")
        save_budget(conn, Budget(id="consumer-tokens", scope="business_unit",
                                 scope_value="consumer", period="month", limit_units=100_000),
                    actor="test", reason="chargeback test")
    return books


def statement(engine, rules=True, owner=None):
    with engine.connect() as conn:
        return build_statement(conn, OCTOBER, rules=load_rules(RULES) if rules else [],
                               rules_file=RULES.name if rules else None,
                               owner=parse_scope(owner),
                               generated_at=datetime(2026, 11, 2, 9, tzinfo=UTC))


def by_owner(result):
    return {o.owner: o for o in result.owners}


def test_totals_tie_out_exactly_with_rules(books_with_budget):
    result = statement(books_with_budget)
    assert result.ledger_total == {"USD": OCTOBER_TOTAL}
    tie = result.tie_out()["USD"]
    assert tie == {"direct": 3 * MINI + FULL, "reallocated": 0,
                   "shared_allocations": 3 * MINI + FULL, "quarantined": 2 * MINI,
                   "unallocated_pool": 0, "true_up": 0, "adjustments": 0,
                   "adjustments_not_charged": 0, "ledger_total": OCTOBER_TOTAL,
                   "difference": 0}
    owners = by_owner(result)
    assert owners["search-summaries"].direct == {"USD": 3 * MINI}
    assert owners["contract-review"].direct == {"USD": FULL}
    assert "platform-shared" not in owners  # the pool is split, not an owner's direct cost
    # Each origin charge is split into children that sum to it exactly.
    for charge in result.shared.charges:
        assert sum(c.amount_pico for c in charge.children) == charge.amount_pico
    received = [(r.charge.rule.id, r.amount_pico) for r in owners["support-assistant"].received]
    assert received == [("platform-proportional-q4", 0), ("platform-fixed-oct-h2", FULL // 5)]


def test_without_rules_the_pool_stays_unallocated_and_still_ties_out(books):
    result = statement(books, rules=False)
    tie = result.tie_out()["USD"]
    assert tie["shared_allocations"] == 0
    assert tie["unallocated_pool"] == 3 * MINI + FULL
    assert tie["difference"] == 0
    assert "support-assistant" not in by_owner(result)


def test_central_and_held_charges_tie_out(books):
    rules = parse_rules("""\
rules:
  - id: central-early
    pool: platform-shared
    method: central
    effective_from: 2026-10-01
    effective_to: 2026-10-16
    reviewed_by: finance
    reviewed_at: 2026-09-30
  - id: held-late
    pool: platform-shared
    method: hold
    effective_from: 2026-10-16
    effective_to: 2026-11-01
    reviewed_by: finance
    reviewed_at: 2026-09-30
""")
    with books.connect() as conn:
        result = build_statement(conn, OCTOBER, rules=rules, rules_file="inline")
    pool = by_owner(result)["platform-shared"]  # charged centrally: the pool's owner pays
    assert [(r.charge.rule.id, r.amount_pico) for r in pool.received] == [
        ("central-early", 3 * MINI)]
    assert pool.business_unit == "platform"
    tie = result.tie_out()["USD"]
    assert (tie["shared_allocations"], tie["unallocated_pool"], tie["difference"]) == (
        3 * MINI, FULL, 0)
    assert "held (held-late): not charged until the rule is resolved" in to_json(result)
    assert "| Platform shared AI usage | held (held-late) | 0.01 |" in to_markdown(result)


def test_reallocated_quarantine_moves_to_the_owner_and_still_ties_out(books):
    with books.begin() as conn:
        assign(conn, group=group_id("unknown_application", "ghost-app"),
               application="support-assistant", actor="ana", reason="renamed app")
    result = statement(books)
    assert by_owner(result)["support-assistant"].reallocated == {"USD": MINI}
    assert {q.owner for q in result.quarantined} == {"(untagged)"}
    tie = result.tie_out()["USD"]
    assert (tie["reallocated"], tie["quarantined"], tie["difference"]) == (MINI, MINI, 0)


def test_quarantine_unpriced_budgets_and_price_sources(books_with_budget):
    result = statement(books_with_budget)
    assert {(q.owner, q.events, q.cost_pico) for q in result.quarantined} == {
        ("(untagged)", 1, MINI), ("ghost-app", 1, MINI)}
    assert result.unpriced_by_model == {"mystery-model": 1}
    search = by_owner(result)["search-summaries"]
    assert search.unpriced_by_model == {"mystery-model": 1}
    budgets = {(b.worst.budget.id, b.worst.spent) for b in search.budgets}
    # Budgets count the owner's own usage, shared-pool usage excluded.
    assert budgets == {("search-oct", 3 * MINI), ("consumer-tokens", 4 * 1500)}
    assert [b.budget.id for b in by_owner(result)["contract-review"].budgets] == []
    assert {p.id for p in result.price_sources} == {
        "contracted:cometapi:gpt-4o-mini@2026-01-01", "contracted:cometapi:gpt-4o@2026-01-01"}
    assert {p.checked_by for p in result.price_sources} == {"finance-partner"}
    assert result.reconciliations == []


def test_latest_reconciliation_of_the_period_is_shown(books, tmp_path):
    bill = _bill(books, tmp_path, [_row("x")])
    reconcile(books, period=OCTOBER, bill_id=bill, reviewer="Ben Okafor", actor="ana")
    latest = reconcile(books, period=OCTOBER, bill_id=bill, reviewer="Dana Kim", actor="ana")
    result = statement(books)
    assert [(r.id, r.reviewer) for r in result.reconciliations] == [(latest.id, "Dana Kim")]
    text = to_markdown(result)
    assert f"| cometapi | {latest.result} |" in text and "| Dana Kim |" in text
    assert "not reconciled" not in text


def test_not_reconciled_is_said(books):
    assert "Not reconciled: no reconciliation record for 2026-10" in to_markdown(statement(books))


def test_every_section_in_markdown_html_and_json(books_with_budget):
    result = statement(books_with_budget)
    markdown, html = to_markdown(result), to_html(result)
    for title in SECTIONS:
        assert f"## {title}" in markdown
        assert title in html
    document = json.loads(to_json(result))
    assert {"owners", "by_business_unit", "by_cost_center", "shared", "unallocated_pool",
            "quarantined", "unpriced", "budgets", "coverage", "reconciliation",
            "price_sources", "tie_out", "line_items", "not_asserted", "header"} <= set(document)
    assert document["header"]["shared_cost_rules"] == "shared-cost-rules.yaml"
    assert any("accepted the chargeback" in text for text in document["not_asserted"])
    # Exact decimal strings, never floats.
    assert document["tie_out"]["rows"] == [{
        "currency": "USD", "direct": "0.00885", "reallocated": "0",
        "shared_allocations": "0.00885", "true_up": "0", "adjustments": "0",
        "quarantined": "0.0009", "unallocated_pool": "0", "adjustments_not_charged": "0",
        "ledger_total": "0.0186", "difference": "0"}]
    shares = {(r["recipient"], r["rule_id"]): r["amount"] for r in document["shared"]["rows"]}
    assert shares["search-summaries", "platform-proportional-q4"] == "0.000144642857"
    assert "search-oct" in markdown and "search-oct" in html
    assert "| mystery-model | 1 | Search Summaries: 1 |" in markdown


def test_csv_line_items_add_up_to_the_ledger_total(books_with_budget):
    rows = list(csv.DictReader(io.StringIO(to_csv(statement(books_with_budget)))))
    total = sum(Decimal(r["amount"]) for r in rows if r["currency"] == "USD")
    assert total == Decimal(OCTOBER_TOTAL) / 10**12
    lines = {r["line"] for r in rows}
    assert lines == {"direct", "shared allocation", "quarantined"}
    fixed = [r for r in rows if r["rule_id"] == "platform-fixed-oct-h2"]
    assert {(r["owner"], r["method"], r["ratio"], r["amount"]) for r in fixed} == {
        ("search-summaries", "fixed", "0.5", "0.00375"),
        ("contract-review", "fixed", "0.3", "0.00225"),
        ("support-assistant", "fixed", "0.2", "0.0015")}


def test_html_is_self_contained_with_one_bar_per_owner(books_with_budget):
    result = statement(books_with_budget)
    html = to_html(result)
    assert "<script" not in html and "http://" not in html.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")
    charts = re.findall(r"<svg.*?</svg>", html, re.S)
    owner_chart = next(c for c in charts if "Charges by application (USD)" in c)
    assert owner_chart.count('class="bar"') == len(result.owners) == 3
    day_chart = next(c for c in charts if "Ledger spend by day" in c)
    assert day_chart.count('class="bar"') == 2  # 5 and 20 October
    # The biggest owner (contract-review) gets the full-length bar.
    widths = dict(re.findall(r"<text[^>]*>([A-Za-z ]+)</text><rect class=\"bar\"[^>]*"
                             r"width=\"(\d+)\"", owner_chart))
    assert widths["Contract Review"] == "250"
    assert int(widths["Support Assistant"]) < int(widths["Search Summaries"]) < 250


def test_owner_filter_keeps_one_statement(books):
    result = statement(books, owner="contract-review")
    assert [o.owner for o in result.owners] == ["contract-review"]


def test_cli_writes_each_format(cli_ledger, books, tmp_path):
    runner = CliRunner()
    for fmt in ("md", "html", "csv", "json"):
        out = tmp_path / f"statement.{fmt}"
        result = runner.invoke(app, ["chargeback", "--period", "2026-10", "--rules", str(RULES),
                                     "--format", fmt, "--output", str(out)])
        assert result.exit_code == 0, result.output
        assert "platform-fixed-oct-h2" in out.read_text()
    result = runner.invoke(app, ["chargeback", "--period", "2026-10", "--owner", "nobody"])
    assert result.exit_code == 2
    assert "no spend or allocation for application:nobody in 2026-10" in result.output
    shown = runner.invoke(app, ["chargeback", "--period", "2026-10", "--format", "json"])
    assert json.loads(shown.output)["tie_out"]["rows"][0]["unallocated_pool"] == "0.00885"
