"""Amounts in the JSON and CSV output of every command are plain decimal strings: exactly
10 USD is `10` (not `1E+1`), 0.00000015 USD is `0.00000015` (not `1.5E-7`), and no
percentage is negative zero. On SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import json
import re
from datetime import UTC, datetime

import pytest
from factories import AT
from typer.testing import CliRunner

from spendtrail.cli.app import app
from spendtrail.events import AllocationContext, Usage, new_event
from spendtrail.ledger.ingest import Ingester
from spendtrail.reconcile import import_bill

EXPONENT = re.compile(r"-?\d+(\.\d+)?[eE][+-]?\d+")
HEADER = "created_at,type,token_name,model_name,prompt_tokens,completion_tokens,quota,request_id"


def _event(rid: str, app_id: str, model: str, at: datetime = AT, **usage: int):
    return new_event(
        started_at=at,
        provider="cometapi",
        model_requested=model,
        provider_request_id=rid,
        context=AllocationContext(
            application=app_id, environment="production", workload_class="batch"
        ),
        usage=Usage(**usage),
    )


@pytest.fixture
def tens(seeded, cli_ledger, tmp_path):
    """10 USD exactly (1M gpt-4o output tokens) and 0.00000015 USD (1 gpt-4o-mini input
    token) in October, billed as 5,000,000 and 1 quota; another 10 USD in November."""
    Ingester(seeded).ingest_events(
        [
            _event("ten", "search-summaries", "gpt-4o", output_tokens=1_000_000),
            _event("tiny", "contract-review", "gpt-4o-mini", input_tokens=1),
            _event(
                "late",
                "search-summaries",
                "gpt-4o",
                at=datetime(2026, 11, 2, tzinfo=UTC),
                output_tokens=1_000_000,
            ),
        ]
    )
    bill = tmp_path / "bill.csv"
    stamp = int(AT.timestamp())
    bill.write_text(
        f"{HEADER}\n{stamp},2,k,gpt-4o,0,1000000,5000000,ten\n{stamp},2,k,gpt-4o-mini,1,0,1,tiny\n"
    )
    return import_bill(seeded, bill, "cometapi-csv", actor="ana").bill.id


def _run(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code in (0, 1, 3), result.output
    if args[-1] in ("json", "csv"):  # human formats may show a tiny amount as 1.50E-7
        exponents = [v for v in _values(result.stdout, args[-1]) if EXPONENT.fullmatch(v)]
        assert not exponents, (args, result.stdout)
    assert not re.search(r'-0\.0+(%|")', result.stdout), (args, result.stdout)
    return result.stdout


def _values(text: str, fmt: str) -> list[str]:
    """Every word of every string in a JSON document or CSV text ("10 USD" is two)."""
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            node = list(node.values())
        if isinstance(node, list):
            for child in node:
                walk(child)
        elif isinstance(node, str):
            found.extend(re.split(r"[\s;,()]+", node))

    walk(json.loads(text) if fmt == "json" else list(csv.reader(text.splitlines())))
    return found


def test_costs_reports_allocation_and_budgets(tens):
    rows = json.loads(
        _run("costs", "--period", "2026-10", "--by", "application", "--format", "json")
    )
    assert {r["application"]: r["cost_USD"] for r in rows} == {
        "search-summaries": "10",
        "contract-review": "0.00000015",
    }
    rows = list(
        csv.DictReader(
            _run(
                "costs", "--period", "2026-10", "--by", "application", "--format", "csv"
            ).splitlines()
        )
    )
    assert {r["application"]: r["cost_USD"] for r in rows} == {
        "search-summaries": "10",
        "contract-review": "0.00000015",
    }
    for fmt in ("json", "csv"):
        statement = _run("report", "chargeback", "--period", "2026-10", "--format", fmt)
        assert "0.00000015" in statement and re.search(r'[,"]10[,"]', statement)
        assert "0.00000015" in _run(
            "allocation", "coverage", "--period", "2026-10", "--format", fmt
        )
        assert "0.00000015" in _run("report", "retries", "--period", "2026-10", "--format", fmt)
    CliRunner().invoke(
        app,
        [
            "budgets",
            "set",
            "ten",
            "--application",
            "search-summaries",
            "--period",
            "month",
            "--limit",
            "10 USD",
        ],
    )
    [budget] = json.loads(_run("budgets", "show", "ten", "--at", "2026-10-20", "--format", "json"))
    assert (budget["limit"], budget["spent"], budget["unit"]) == ("10", "10", "USD")
    [listed] = list(csv.DictReader(_run("budgets", "list", "--format", "csv").splitlines()))
    assert (listed["limit"], listed["unit"]) == ("10", "USD")
    CliRunner().invoke(
        app,
        [
            "budgets",
            "set",
            "tiny",
            "--application",
            "contract-review",
            "--period",
            "month",
            "--limit",
            "0.000001 USD",
        ],
    )
    review = json.loads(_run("budgets", "review", "--period", "2026-10", "--format", "json"))
    assert {r["budget_id"]: (r["spent"], r["limit"]) for r in review["rows"]} == {
        "ten": ("10 USD", "10 USD"),
        "tiny": ("0.00000015 USD", "0.000001 USD"),
    }


def test_reconcile(tens):
    base = ["reconcile", "--bill", str(tens), "--reviewer", "Ben"]
    record = json.loads(_run(*base, "--period", "2026-10", "--format", "json"))
    assert (record["logged"], record["billed"], record["variance"]) == (
        "10.00000015",
        "10.000002",
        "-0.00000185",
    )
    assert (record["variance_percent"], record["tolerance_percent"]) == ("0.0000", "1")
    assert {o["owner"]: o["logged"] for o in record["owners"]} == {
        "contract-review": "0.00000015",
        "search-summaries": "10",
    }
    assert "| variance % | 0.0000% |" in _run(*base, "--period", "2026-10", "--format", "md")
    [unbilled] = list(
        csv.DictReader(_run(*base, "--period", "2026-11", "--format", "csv").splitlines())
    )
    assert (unbilled["kind"], unbilled["logged"], unbilled["currency"]) == (
        "in_ledger_not_billed",
        "10",
        "USD",
    )
