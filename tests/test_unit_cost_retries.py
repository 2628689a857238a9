"""Retry inflation (a unit-economics view): attempts vs logical requests vs billable calls per
owner, and the cost of failed and retried attempts, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from test_allocation_helpers import MINI
from typer.testing import CliRunner

from spendtrail.cli.report_cmd import app
from spendtrail.events import AllocationContext, Usage, new_event
from spendtrail.ledger.ingest import Ingester
from spendtrail.periods import parse_period
from spendtrail.reports.retries import retry_inflation

AT = datetime(2026, 10, 5, 12, tzinfo=UTC)


def attempt(request: str, number: int, outcome: str = "success", app="search-summaries"):
    return new_event(
        started_at=AT, provider="cometapi", model_requested="gpt-4o-mini", request_id=request,
        attempt=number, outcome=outcome,
        context=AllocationContext(application=app, environment="production",
                                  workload_class="batch"),
        usage=Usage(input_tokens=1000, output_tokens=500),
    )


ATTEMPTS = [
    attempt("r1", 1, "timeout"),  # failed, then retried
    attempt("r1", 2),
    attempt("r2", 1),  # succeeded but retried anyway: billed twice
    attempt("r2", 2),
    attempt("r3", 1),
    attempt("c1", 1, app="contract-review"),
]


def test_attempts_requests_billable_and_wasted_cost(seeded):
    Ingester(seeded).ingest_events(ATTEMPTS)
    with seeded.connect() as conn:
        rows = {r.owner: r for r in retry_inflation(conn, parse_period("2026-10"))}
    search = rows["search-summaries"]
    assert (search.attempts, search.requests, search.billable) == (5, 3, 4)
    assert search.currency == "USD"
    assert search.cost_pico == 5 * MINI
    assert search.failed_cost_pico == MINI
    assert search.retried_cost_pico == 2 * MINI  # r1 attempt 1 and r2 attempt 1
    assert search.row()["attempts_per_request"] == "1.67"
    contract = rows["contract-review"]
    assert (contract.attempts, contract.requests, contract.retried_cost_pico) == (1, 1, 0)


def test_cli_retries_json(cli_ledger, seeded):
    Ingester(seeded).ingest_events(ATTEMPTS)
    result = CliRunner().invoke(app, ["retries", "--period", "2026-10", "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = {r["owner"]: r for r in json.loads(result.output)}
    assert rows["search-summaries"]["retried_cost"] == "0.0009"
    assert rows["search-summaries"]["logical_requests"] == 3
