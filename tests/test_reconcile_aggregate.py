"""Reconciling bucketed reports (OpenAI costs and usage) per (day, model) aggregates."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from factories import AT, SHEET

from spendtrail.events import AllocationContext, Usage, new_event
from spendtrail.ledger.ingest import Ingester
from spendtrail.ledger.prices import add_entries
from spendtrail.money import to_pico
from spendtrail.periods import parse_period
from spendtrail.pricing import load_sheet
from spendtrail.reconcile import UNATTRIBUTED, import_bill, reconcile

DAY = int(datetime(2026, 10, 5, tzinfo=UTC).timestamp())
OCTOBER = parse_period("2026-10")


@pytest.fixture
def openai_ledger(seeded, tmp_path):
    """Three gpt-4o-mini calls on 2026-10-05 (0.00045 USD each): two search, one contract."""
    sheet = tmp_path / "openai.yaml"
    sheet.write_text(SHEET.replace("provider: cometapi", "provider: openai"))
    with seeded.begin() as conn:
        add_entries(conn, load_sheet(sheet), actor="test")
    Ingester(seeded).ingest_events([
        new_event(started_at=AT, provider="openai", model_requested="gpt-4o-mini",
                  context=AllocationContext(application=app, environment="production",
                                            workload_class="batch"),
                  usage=Usage(input_tokens=1000, output_tokens=500))
        for app in ("search-summaries", "search-summaries", "contract-review")
    ])
    return seeded


def _page(results_by_day: list[list[dict]]) -> str:
    buckets = [{"object": "bucket", "start_time": DAY + n * 86400,
                "end_time": DAY + (n + 1) * 86400, "results": results}
               for n, results in enumerate(results_by_day)]
    return json.dumps({"object": "page", "data": buckets, "has_more": False, "next_page": None})


def _cost(value: str) -> dict:
    # A JSON number, as the Costs API sends it; the importer reads it as a Decimal.
    return {"object": "organization.costs.result", "amount": {"value": f"@{value}@",
            "currency": "usd"}, "line_item": None, "project_id": "proj_abc"}


def test_costs_are_compared_per_day_and_attributed_pro_rata(openai_ledger, tmp_path):
    path = tmp_path / "costs.json"
    path.write_text(_page([[_cost("0.0014")], [_cost("0.5")]])
                    .replace('"@', "").replace('@"', ""))
    bill = import_bill(openai_ledger, path, "openai-costs", actor="ana").bill
    record = reconcile(openai_ledger, period=OCTOBER, bill_id=bill.id, reviewer="Ben",
                       actor="ana")
    assert record.method == "aggregate"
    kinds = [(d.kind, d.day) for d in record.differences]
    assert kinds == [("price_mismatch", AT.date()),
                     ("billed_not_in_ledger", AT.date() + timedelta(days=1))]
    assert record.billed_pico == to_pico(Decimal("0.5014"))
    assert record.logged_pico == to_pico(Decimal("0.00135"))
    owners = {o.owner: o.billed_pico for o in record.owners}
    # 0.0014 split 2:1 by logged cost, to the pico-unit, summing exactly.
    assert owners == {"search-summaries": 933_333_334, "contract-review": 466_666_666,
                      UNATTRIBUTED: to_pico(Decimal("0.5"))}
    assert sum(owners.values()) == record.billed_pico
    assert record.result == "fail"


def test_usage_report_tokens_are_compared_but_the_result_is_inconclusive(openai_ledger,
                                                                         tmp_path):
    usage = {"object": "organization.usage.completions.result", "input_tokens": 3000,
             "input_cached_tokens": 0, "output_tokens": 1600, "num_model_requests": 3,
             "model": "gpt-4o-mini", "project_id": "proj_abc", "api_key_id": "key_abc"}
    path = tmp_path / "usage.json"
    path.write_text(_page([[usage]]))
    bill = import_bill(openai_ledger, path, "openai-usage", actor="ana").bill
    record = reconcile(openai_ledger, period=OCTOBER, bill_id=bill.id, reviewer="Ben",
                       actor="ana")
    [difference] = record.differences
    assert (difference.kind, difference.model, difference.key_name) == (
        "token_mismatch", "gpt-4o-mini", "key_abc")
    assert (difference.logged_tokens, difference.billed_tokens) == ("3000/1500", "3000/1600")
    assert record.result == "inconclusive"
    assert record.reasons == ["the bill carries no amounts (a usage-only report)"]


def test_the_provider_compared_with_can_be_named(openai_ledger, tmp_path):
    path = tmp_path / "costs.json"
    path.write_text(_page([[_cost("0.00135")]]).replace('"@', "").replace('@"', ""))
    bill = import_bill(openai_ledger, path, "openai-costs", actor="ana").bill
    matched = reconcile(openai_ledger, period=OCTOBER, bill_id=bill.id, reviewer="Ben",
                        actor="ana")
    assert (matched.provider, matched.result, matched.differences) == ("openai", "pass", [])
    other = reconcile(openai_ledger, period=OCTOBER, bill_id=bill.id, reviewer="Ben",
                      actor="ana", provider="anthropic")
    assert (other.provider, other.logged_pico, other.result) == ("anthropic", 0, "fail")
    assert [d.kind for d in other.differences] == ["billed_not_in_ledger"]
