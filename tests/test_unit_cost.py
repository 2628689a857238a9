"""Unit economics on the shared books: built-in per-1M-tokens and per-request costs and a
metric whose denominator comes from a CSV, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from test_allocation_helpers import FULL, MINI
from typer.testing import CliRunner

from spendtrail.cli.report_cmd import app
from spendtrail.periods import parse_period
from spendtrail.reports.unit_cost import (
    BUILT_IN,
    UnitCostError,
    load_denominators,
    load_metrics,
    unit_costs,
)

pytest_plugins = ("test_allocation_helpers",)  # the `books` fixture

OCTOBER = parse_period("2026-10")
METRICS = """\
metrics:
  - name: cost_per_contract
    numerator: cost
    denominator: contracts_reviewed
    denominator_source: contract system monthly export
    refresh: monthly
"""


@pytest.fixture
def files(tmp_path):
    metrics = tmp_path / "metrics.yaml"
    metrics.write_text(METRICS)
    denominators = tmp_path / "denominators.csv"
    denominators.write_text("owner,denominator,value\ncontract-review,contracts_reviewed,3\n")
    return metrics, denominators


def table(results):
    return {(r.metric, r.owner): r for r in results}


def test_built_in_and_csv_denominators(books, files):
    metrics, denominators = files
    with books.connect() as conn:
        results = table(unit_costs(conn, OCTOBER, [*BUILT_IN, *load_metrics(metrics)],
                                   load_denominators(denominators)))
    search = results["cost_per_1m_tokens", "search-summaries"]
    # 3 priced mini calls + 1 unpriced call: 4 x 1500 tokens, 3 x 0.00045 USD.
    assert (search.cost, search.denominator) == (Decimal(3 * MINI) / 10**12, 6000)
    assert search.cost_per_unit == Decimal("0.225")
    assert results["cost_per_request", "search-summaries"].cost_per_unit == Decimal("0.0003375")
    contract = results["cost_per_contract", "contract-review"]
    assert contract.cost == Decimal(FULL) / 10**12
    assert contract.row()["cost_per_unit"] == "0.0025"
    # No denominator for the owner: no quotient, never a guess.
    assert results["cost_per_contract", "search-summaries"].row()["cost_per_unit"] == "n/a"
    assert ("cost_per_1m_tokens", "platform-shared") not in results  # pool usage is not direct


def test_rounding_is_half_even_at_12_places(books, tmp_path):
    denominators = tmp_path / "d.csv"
    denominators.write_text("owner,denominator,value\ncontract-review,contracts_reviewed,7\n")
    with books.connect() as conn:
        results = table(unit_costs(conn, OCTOBER, load_metrics(_metrics(tmp_path)),
                                   load_denominators(denominators)))
    assert results["cost_per_contract", "contract-review"].cost_per_unit == Decimal(
        "0.001071428571")


def _metrics(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text(METRICS)
    return path


def test_bad_definitions_name_their_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(METRICS.replace("monthly\n", "hourly\n").replace("numerator: cost",
                                                                     "numerator: tokens"))
    with pytest.raises(UnitCostError, match=r"bad.yaml:3: metrics\[0\].numerator"):
        load_metrics(path)
    path.write_text(METRICS.replace("    refresh: monthly\n", ""))
    with pytest.raises(UnitCostError, match="missing required key 'refresh'"):
        load_metrics(path)
    csv_path = tmp_path / "d.csv"
    csv_path.write_text("owner,denominator,value\na,b,-1\n")
    with pytest.raises(UnitCostError, match="d.csv:2: value must not be negative"):
        load_denominators(csv_path)


def test_cli_unit_cost_json(cli_ledger, books, files):
    metrics, denominators = files
    result = CliRunner().invoke(app, ["unit-cost", "--period", "2026-10", "--metrics",
                                      str(metrics), "--denominators", str(denominators),
                                      "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = {(r["metric"], r["owner"]): r for r in json.loads(result.output)}
    assert rows["cost_per_contract", "contract-review"]["cost_per_unit"] == "0.0025"
    assert rows["cost_per_1m_tokens", "contract-review"]["cost_per_unit"] == "5"
