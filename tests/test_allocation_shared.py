"""Applying shared-cost rules to a period on a real ledger (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from datetime import date
from fractions import Fraction

from factories import ROOT
from test_allocation_helpers import FULL, MINI
from typer.testing import CliRunner

from spendtrail.allocation.exceptions import assign, group_id
from spendtrail.allocation.rules import load_rules, parse_rules
from spendtrail.allocation.shared import Child, apply_rules
from spendtrail.cli.allocation_cmd import allocation_app
from spendtrail.periods import parse_period

pytest_plugins = ("test_allocation_helpers",)  # the `books` fixture

RULES = ROOT / "examples" / "shared-cost-rules.yaml"


def rule(method: str, extra: str = "", start="2026-10-01", end="2026-11-01"):
    return parse_rules(f"""\
rules:
  - id: r
    pool: platform-shared
    method: {method}
    effective_from: {start}
    effective_to: {end}
    reviewed_by: finance
    reviewed_at: 2026-09-30
{extra}""")


def apply(engine, rules, period="2026-10"):
    with engine.connect() as conn:
        return apply_rules(conn, rules, parse_period(period))


def test_example_rules_for_october_split_each_segment_exactly(books):
    result = apply(books, load_rules(RULES))
    proportional, fixed = result.charges
    # 1-15 October: three pool calls, split by direct USD cost (search 2 priced calls,
    # contract-review one gpt-4o call, support-assistant none).
    assert proportional.id == "platform-proportional-q4/USD/2026-10-01..2026-10-15"
    assert proportional.amount_pico == 3 * MINI
    assert proportional.children == (
        Child("search-summaries", 144_642_857, Fraction(3, 28)),
        Child("contract-review", 1_205_357_143, Fraction(25, 28)),
        Child("support-assistant", 0, Fraction(0)),
    )
    # 16-31 October: the fixed 50/30/20.
    assert (fixed.start, fixed.end) == (date(2026, 10, 16), date(2026, 11, 1))
    assert [(c.recipient, c.amount_pico, c.ratio) for c in fixed.children] == [
        ("search-summaries", FULL // 2, Fraction(1, 2)),
        ("contract-review", FULL * 3 // 10, Fraction(3, 10)),
        ("support-assistant", FULL // 5, Fraction(1, 5)),
    ]
    for charge in result.charges:
        assert sum(c.amount_pico for c in charge.children) == charge.amount_pico
        assert sum(c.ratio for c in charge.children) == 1
    assert result.uncovered == ()


def test_hold_charges_nobody_and_segments_follow_the_windows(books):
    result = apply(books, load_rules(RULES), "2026-10-15..2026-11-05")
    assert [(c.rule.id, c.status, c.amount_pico) for c in result.charges] == [
        ("platform-fixed-oct-h2", "split", FULL),
        ("platform-hold-nov", "held", MINI),  # nothing is charged until resolved
    ]
    assert result.charges[1].children == ()


def test_central_keeps_the_cost_with_the_pool(books):
    (charge,) = apply(books, rule("central")).charges
    assert charge.status == "central"
    assert charge.children == (Child("platform-shared", 3 * MINI + FULL, Fraction(1)),)


def test_even_without_recipients_means_every_owner_with_direct_cost(books):
    (charge,) = apply(books, rule("even")).charges
    total = 3 * MINI + FULL
    assert [(c.recipient, c.amount_pico, c.ratio) for c in charge.children] == [
        ("contract-review", total // 2, Fraction(1, 2)),
        ("search-summaries", total // 2, Fraction(1, 2)),
    ]


def test_proportional_with_no_direct_cost_stays_with_the_pool_visibly(books):
    (charge,) = apply(books, rule("proportional", "    recipients: [eval-harness]\n")).charges
    assert charge.status == "unsplit" and charge.children == ()
    assert charge.detail == ("stays with the pool: cannot split by direct cost: all weights are "
                             "zero; there is no basis to split by")


def test_pool_cost_no_rule_covers_is_reported(books):
    result = apply(books, rule("central", start="2026-10-16"))
    assert [c.amount_pico for c in result.charges] == [FULL]
    assert [(u.pool, u.currency, u.amount_pico) for u in result.uncovered] == [
        ("platform-shared", "USD", 3 * MINI)]


def test_cli_shared_json_carries_allocated_method_details(books, cli_ledger):
    result = CliRunner().invoke(allocation_app, ["shared", "--period", "2026-10", "--rules",
                                                 str(RULES), "--format", "json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    first = document["charges"][0]
    assert first["amount_pico"] == 3 * MINI and first["method"] == "proportional"
    elements = first["AllocatedMethodDetails"]["Elements"]
    assert [e["x_ExactRatio"] for e in elements] == ["3/28", "25/28", "0"]
    assert [e["AllocatedRatio"] for e in elements] == ["0.107142857143", "0.892857142857", "0"]
    assert sum(e["x_AmountPico"] for e in elements) == first["amount_pico"]


def test_cli_check_names_the_line_of_an_unknown_recipient(books, cli_ledger, tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES.read_text().replace("contract-review: \"30\"", "contract-reveiw: 30"))
    result = CliRunner().invoke(allocation_app, ["check", str(rules)])
    assert result.exit_code == 2
    assert f"{rules}:29: rule 'platform-fixed-oct-h2': 'contract-reveiw' is not an application" \
        in result.output
    ok = CliRunner().invoke(allocation_app, ["check", str(RULES)])
    assert ok.exit_code == 0 and "4 rules, OK" in ok.output


def test_reallocated_cost_counts_as_direct_cost(books):
    with books.begin() as conn:
        assign(conn, group=group_id("unknown_application", "ghost-app"),
               application="support-assistant", actor="ana", reason="renamed app")
    proportional = apply(books, load_rules(RULES)).charges[0]
    # weights: search 2 x MINI, contract FULL, support MINI (reallocated) = 3:25:1.5 -> 6:50:3
    assert [(c.recipient, c.ratio) for c in proportional.children] == [
        ("search-summaries", Fraction(6, 59)),
        ("contract-review", Fraction(50, 59)),
        ("support-assistant", Fraction(3, 59)),
    ]
    assert sum(c.amount_pico for c in proportional.children) == 3 * MINI
