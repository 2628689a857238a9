"""Coverage KPIs from the rollups, untagged usage as its own line, and the unallocated alert."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest
from test_allocation_helpers import FULL, MINI
from typer.testing import CliRunner

from spendtrail.allocation.coverage import OwnerLine, coverage, parse_threshold, percent
from spendtrail.cli.allocation_cmd import allocation_app
from spendtrail.errors import SpendtrailError
from spendtrail.periods import parse_period

pytest_plugins = ("test_allocation_helpers",)  # the `books` fixture

ALLOCATED = 3 * MINI + FULL  # search-summaries' 3 priced calls + contract-review
SHARED = 3 * MINI + FULL
QUARANTINED = 2 * MINI
TOTAL = ALLOCATED + SHARED + QUARANTINED


def test_october_coverage(books):
    with books.connect() as conn:
        result = coverage(conn, parse_period("2026-10"))
    (usd,) = result.currencies
    assert usd.cost_pico == {"allocated": ALLOCATED, "shared": SHARED,
                             "quarantined": QUARANTINED}
    assert usd.share("quarantined") == Fraction(QUARANTINED, TOTAL) == Fraction(3, 62)
    assert result.events == {"allocated": 5, "shared": 4, "quarantined": 2}
    assert result.unpriced_events == 1 and result.unpriced_share == Fraction(1, 11)
    assert result.unallocated_share(usd) == Fraction(3, 62) + Fraction(1, 11)
    assert result.alerts() == [
        "unallocated USD spend is 13.93% of 2026-10 (quarantined cost + unpriced events), "
        "over 5%"]
    # Untagged usage is its own line; the unpriced call is a line with no cost.
    assert OwnerLine("quarantined", "(untagged)", "USD", 1, MINI) in result.lines
    assert OwnerLine("quarantined", "ghost-app", "USD", 1, MINI) in result.lines
    assert OwnerLine("allocated", "search-summaries", "", 1, 0) in result.lines
    assert OwnerLine("allocated", "search-summaries", "USD", 3, 3 * MINI) in result.lines


def test_below_the_threshold_there_is_no_alert(books):
    with books.connect() as conn:
        assert coverage(conn, parse_period("2026-10"), Fraction(15, 100)).alerts() == []
        november = coverage(conn, parse_period("2026-11"))
    assert november.currencies[0].share("shared") == 1
    assert november.alerts() == []


def test_an_empty_period_has_no_shares(books):
    with books.connect() as conn:
        empty = coverage(conn, parse_period("2025-01"))
    assert empty.currencies == [] and empty.unpriced_share is None and empty.alerts() == []


def test_thresholds_and_percentages():
    assert parse_threshold("5%") == Fraction(1, 20)
    assert parse_threshold("2.5") == Fraction(1, 40)
    for bad in ("-1%", "101%", "five", "nan"):
        with pytest.raises(SpendtrailError):
            parse_threshold(bad)
    assert percent(Fraction(3, 62)) == "4.84%"
    assert percent(Fraction(1, 8)) == "12.50%"  # 12.5 exactly, no rounding
    assert percent(None) == "n/a"


def test_cli_coverage_alerts_with_exit_code_1(books, cli_ledger):
    runner = CliRunner()
    result = runner.invoke(allocation_app, ["coverage", "--period", "2026-10", "--format",
                                            "json"])
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert document["kpis"][0]["quarantined"] == "4.84%"
    assert document["kpis"][0]["unpriced_events"] == "9.09%"
    assert document["kpis"][0]["total"] == "0.0186"  # USD
    assert "alert: unallocated USD spend is 13.93%" in result.stderr
    calm = runner.invoke(allocation_app, ["coverage", "--period", "2026-10", "--threshold",
                                          "15%"])
    assert calm.exit_code == 0, calm.output
    assert "(untagged)" in calm.stdout
