"""Provider accounts to owners: an OpenAI costs bill per project and an Anthropic cost report
per workspace, for October 2026, matched and allocated by owner through the example
registry's `provider_accounts`; usage on an account no captured call matches is its own line
(`billed_outside_gateway`), never a mystery variance; a bad mapping is a FILE:LINE error."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from bill_api_doubles import BucketApi, Faults, openai_error, serve_app
from factories import AT, ROOT, SHEET
from typer.testing import CliRunner

from spendtrail.cli.app import app as cli
from spendtrail.connectors import Retrying, fetch_bills
from spendtrail.events import AllocationContext, Usage, new_event
from spendtrail.ledger.ingest import Ingester
from spendtrail.ledger.prices import add_entries
from spendtrail.ledger.registry_versions import load_history
from spendtrail.money import to_pico
from spendtrail.periods import parse_period
from spendtrail.pricing import load_sheet
from spendtrail.reconcile import import_bill, reconcile, reconcile_daily
from spendtrail.reconcile.match import UNMAPPED
from spendtrail.reconcile.render import to_json, to_markdown
from spendtrail.registry import RegistryError, parse_registry, registry_changes

OCTOBER = parse_period("2026-10")
FIRST = date(2026, 10, 1)
EXAMPLE = (ROOT / "examples" / "registry.yaml").read_text()
CLAUDE = "claude-sonnet-4-20250514"
CLAUDE_PRICES = """
  - model: claude-sonnet-4-20250514
    prices: {input_tokens: "3.00", output_tokens: "15.00"}
"""


def usd(text: str) -> int:
    return to_pico(Decimal(text))


def _calls(provider: str, model: str, usage: Usage, apps: list[str], source: str):
    workloads = {"support-assistant": "user_facing"}
    return [
        new_event(started_at=AT, provider=provider, model_requested=model, usage=usage,
                  source=source,
                  context=AllocationContext(application=app, environment="production",
                                            workload_class=workloads.get(app, "batch")))
        for app in apps
    ]


@pytest.fixture
def books(seeded, tmp_path):
    """On 2026-10-05: through the gateway, 2 support-assistant and 1 search-summaries
    gpt-4o-mini calls (0.00045 USD each) and 2 support-assistant Claude calls (0.0045 USD
    each); with its own OpenAI key (the SDK hook), 1 contract-review gpt-4o-mini call."""
    for provider in ("openai", "anthropic"):
        sheet = tmp_path / f"{provider}.yaml"
        sheet.write_text(SHEET.replace("provider: cometapi", f"provider: {provider}")
                         + CLAUDE_PRICES)
        with seeded.begin() as conn:
            add_entries(conn, load_sheet(sheet), actor="test")
    mini = Usage(input_tokens=1000, output_tokens=500)
    Ingester(seeded).ingest_events([
        *_calls("openai", "gpt-4o-mini", mini,
                ["support-assistant", "support-assistant", "search-summaries"], "gateway"),
        *_calls("openai", "gpt-4o-mini", mini, ["contract-review"], "hook"),
        *_calls("anthropic", CLAUDE, Usage(input_tokens=1000, output_tokens=100),
                ["support-assistant", "support-assistant"], "gateway"),
    ])
    return seeded


def _midnight(day: date) -> int:
    return int(datetime.combine(day, datetime.min.time(), UTC).timestamp())


def _openai_cost(value: str, project: str) -> dict:
    return {"object": "organization.costs.result",
            "amount": {"value": Decimal(value), "currency": "usd"},
            "line_item": None, "project_id": project}


def _openai_month(results: dict[date, list[dict]]) -> str:
    """One page of daily buckets for the whole of October (empty days included)."""
    buckets = [{"object": "bucket", "start_time": _midnight(FIRST + timedelta(n)),
                "end_time": _midnight(FIRST + timedelta(n + 1)),
                "results": results.get(FIRST + timedelta(n), [])} for n in range(31)]
    page = {"object": "page", "data": buckets, "has_more": False, "next_page": None}
    # Amounts as JSON numbers, written exactly, as the Costs API sends them.
    return json.dumps(page, default=lambda d: f"@{d}@").replace('"@', "").replace('@"', "")


def _anthropic_cost(cents: str, workspace: str) -> dict:
    return {"currency": "USD", "amount": cents, "workspace_id": workspace,
            "description": "Claude Sonnet 4 Usage - Input Tokens", "cost_type": "tokens",
            "context_window": "0-200k", "model": CLAUDE, "service_tier": "standard",
            "token_type": "uncached_input_tokens"}


def _anthropic_month(results: dict[date, list[dict]]) -> str:
    def at(day: date) -> str:
        return f"{day.isoformat()}T00:00:00Z"

    data = [{"starting_at": at(FIRST + timedelta(n)), "ending_at": at(FIRST + timedelta(n + 1)),
             "results": results.get(FIRST + timedelta(n), [])} for n in range(31)]
    return json.dumps({"data": data, "has_more": False, "next_page": None})


def _run(ledger, tmp_path, name: str, text: str, bill_format: str):
    path = tmp_path / name
    path.write_text(text)
    bill = import_bill(ledger, path, bill_format, actor="ana").bill
    return reconcile(ledger, period=OCTOBER, bill_id=bill.id, reviewer="Ben Okafor",
                     actor="ana")


def test_openai_project_used_outside_the_gateway_is_its_owners_own_line(books, tmp_path):
    """The gateway's project (not listed: the organization's default is the gateway) holds
    the gateway's calls; proj_contracts is contract-review's own key; proj_search_batch is a
    search-summaries job that never goes through the gateway, billed every day of October."""
    results = {FIRST + timedelta(n): [_openai_cost("0.25", "proj_search_batch")]
               for n in range(31)}
    results[AT.date()] += [_openai_cost("0.00135", "proj_gateway"),
                           _openai_cost("0.00045", "proj_contracts")]
    record = _run(books, tmp_path, "costs.json", _openai_month(results), "openai-costs")


    [outside] = record.differences
    assert outside.kind == "billed_outside_gateway"
    assert outside.detail == (
        "outside the gateway: project proj_search_batch → application search-summaries "
        "(31 days, 2026-10-01..2026-10-31; no captured call matches it)")
    assert (outside.owner, outside.key_name, outside.billed_pico) == (
        "search-summaries", "proj_search_batch", usd("7.75"))
    owners = {o.owner: (o.events, o.logged_pico, o.billed_pico) for o in record.owners}
    assert owners == {
        "support-assistant": (2, usd("0.0009"), usd("0.0009")),
        "search-summaries": (1, usd("0.00045"), usd("0.00045") + usd("7.75")),
        "contract-review": (1, usd("0.00045"), usd("0.00045")),  # matched on its own project
    }
    assert sum(o.billed_pico for o in record.owners) == record.billed_pico == usd("7.7518")
    # The variance is the batch job's usage, and it is explained: the judged variance is 0.
    assert (record.variance_pico, record.outside_pico) == (-usd("7.75"), usd("7.75"))
    assert (record.judged_variance_pico, record.result, record.reasons) == (0, "pass", [])
    markdown = to_markdown(record)
    assert "| billed outside the gateway | 7.75 USD |" in markdown
    assert "outside the gateway: project proj_search_batch → application search-summaries" \
        in markdown
    assert to_json(record)["billed_outside_gateway"] == "7.75"


def test_anthropic_workspaces_mapped_outside_and_unmapped(books, tmp_path):
    """wrkspc_gateway is the gateway's; wrkspc_contracts is contract-review's, which made no
    Claude call through any capture path; wrkspc_stray is in no mapping."""
    results = {
        AT.date(): [_anthropic_cost("0.9", "wrkspc_gateway"),
                    _anthropic_cost("250", "wrkspc_contracts")],
        AT.date() + timedelta(1): [_anthropic_cost("250", "wrkspc_contracts")],
        AT.date() + timedelta(2): [_anthropic_cost("40", "wrkspc_stray")],
    }
    record = _run(books, tmp_path, "cost.json", _anthropic_month(results), "anthropic-cost")

    assert [(d.kind, d.owner, d.key_name, d.billed_pico, d.model) for d in record.differences] \
        == [("billed_outside_gateway", "contract-review", "wrkspc_contracts", usd("5.00"), CLAUDE),
            ("billed_outside_gateway", None, "wrkspc_stray", usd("0.40"), CLAUDE)]
    assert [d.detail for d in record.differences] == [
        "outside the gateway: workspace wrkspc_contracts → application contract-review "
        "(2 days, 2026-10-05..2026-10-06; no captured call matches it)",
        "unmapped account workspace wrkspc_stray (2026-10-07; no captured call matches it)",
    ]
    owners = {o.owner: (o.events, o.logged_pico, o.billed_pico) for o in record.owners}
    assert owners == {"support-assistant": (2, usd("0.009"), usd("0.009")),
                      "contract-review": (0, 0, usd("5.00")),
                      UNMAPPED: (0, 0, usd("0.40"))}
    assert [o.owner for o in record.owners][-1] == UNMAPPED
    assert sum(o.billed_pico for o in record.owners) == record.billed_pico
    assert (record.outside_pico, record.judged_variance_pico, record.result) == (
        usd("5.40"), 0, "pass")


def test_the_gateway_share_is_still_judged(books, tmp_path):
    """A gateway account billed more than the captured calls cost is a price mismatch and a
    failed run, even with usage outside the gateway on the same bill."""
    results = {AT.date(): [_openai_cost("0.00270", "proj_gateway"),
                           _openai_cost("0.00045", "proj_contracts"),
                           _openai_cost("1", "proj_search_batch")]}
    record = _run(books, tmp_path, "costs.json", _openai_month(results), "openai-costs")
    assert [d.kind for d in record.differences] == ["price_mismatch", "billed_outside_gateway"]
    assert record.judged_variance_pico == -usd("0.00135")
    assert record.result == "fail"
    assert record.reasons == [
        "variance -0.00135 USD (-42.8571%) (usage billed outside the gateway, 1.00 USD, left "
        "out) exceeds the tolerance of 1.00%"]  # -0.00135 of the 0.00315 billed for calls
    # The gateway's lines are split over the owners of its calls, not over contract-review.
    owners = {o.owner: o.billed_pico for o in record.owners}
    assert owners["contract-review"] == usd("0.00045")
    assert owners["support-assistant"] == usd("0.0018")
    assert owners["search-summaries"] == usd("0.0009") + usd("1")


def test_accounts_are_the_billing_providers(books, tmp_path):
    """A project no mapping lists is the gateway's when the organization is. Compared with
    another ledger provider (--provider), the lines are still claimed by their own
    provider's accounts: OpenAI's project is not taken for an unmapped Anthropic workspace,
    and a bill compared with the wrong provider fails."""
    results = {AT.date(): [_openai_cost("0.00135", "proj_other")]}
    record = _run(books, tmp_path, "costs.json", _openai_month(results), "openai-costs")
    assert record.outside_pico == 0  # openai's organization makes proj_other the gateway's
    other = reconcile(books, period=OCTOBER, bill_id=record.bill_import_id, reviewer="Ben",
                      actor="ana", provider="anthropic")
    # The day's Claude calls are what the gateway's OpenAI line is compared with: a price
    # mismatch, not usage outside the gateway.
    assert [d.kind for d in other.differences] == ["price_mismatch"]
    assert [(o.owner, o.billed_pico) for o in other.owners] == [
        ("support-assistant", usd("0.00135"))]
    assert (other.outside_pico, other.result) == (0, "fail")


def test_daily_reconciliation_of_fetched_costs_names_the_outside_project(books, tmp_path):
    """`bills fetch openai` from the Costs API double, then `reconcile --daily`: each closed
    day's record carries the batch job's line."""
    costs = {FIRST + timedelta(n): [_openai_cost("0.25", "proj_search_batch")]
             for n in range(4, 6)}
    costs[AT.date()] += [_openai_cost("0.00135", "proj_gateway"),
                         _openai_cost("0.00045", "proj_contracts")]
    api = BucketApi("openai", "sk-admin-0123456789", {"/v1/organization/costs": costs,
                                                      "/v1/organization/usage/completions": {}})
    now = datetime(2026, 10, 7, 9, tzinfo=UTC)
    with serve_app(api.app(Faults("/v1/organization", openai_error))) as url:
        fetched = fetch_bills(books, "openai", OCTOBER, key="sk-admin-0123456789", actor="ana",
                              out_dir=tmp_path, base_url=url, now=now,
                              retrying=Retrying(attempts=2, backoff=0.01, timeout=10))
    # Days without usage are empty buckets: no bill for them, and the cursor moves past them.
    assert [(b.first_day, b.format) for b in fetched.bills] == [
        (date(2026, 10, 5), "openai-costs"), (date(2026, 10, 6), "openai-costs")]
    assert fetched.through == date(2026, 10, 6)
    records = reconcile_daily(books, "openai", reviewer="Ben", actor="ana", now=now,
                              tolerance=Decimal("0.01"))
    judged = {r.period.start: (r.result, [d.detail.split(" (")[0] for d in r.differences])
              for r in records}
    outside = "outside the gateway: project proj_search_batch → application search-summaries"
    assert judged == {date(2026, 10, 5): ("pass", [outside]),
                      date(2026, 10, 6): ("pass", [outside])}


BAD_ACCOUNTS = """
provider_accounts:
  - provider: openai
    project: proj_search
    application: search-summaries
  - provider: openai
    project: proj_search
    application: contract-review
  - provider: anthropic
    workspace: wrkspc_x
    application: support-bot
  - provider: openai
    organization: org-example
    gateway: true
  - provider: openai
    organization: org-second
    gateway: true
  - provider: anthropic
    api_key: apikey_01
"""


def test_bad_mappings_are_file_line_errors(tmp_path):
    text = EXAMPLE.split("\nprovider_accounts:")[0] + BAD_ACCOUNTS
    path = tmp_path / "registry.yaml"
    path.write_text(text)
    start = text.count("\n", 0, text.index("provider_accounts:")) + 1

    def at(offset: int) -> str:
        return f"{path}:{start + offset}:"

    result = CliRunner().invoke(cli, ["registry", "check", str(path)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.startswith(str(path) + ":")]
    assert lines == [
        f"{at(4)} provider_accounts[1]: openai project proj_search is mapped twice "
        f"(first on line {start + 1})",
        f"{at(9)} provider_accounts[2]: unknown application 'support-bot'; known: "
        "contract-review, eval-harness, platform-shared, sales-email-drafts, search-summaries, "
        "support-assistant",
        f"{at(13)} provider_accounts[4]: a second openai organization (the first on line "
        f"{start + 10}); bills do not say which organization a line is from, so map projects, "
        "workspaces or keys instead",
        f"{at(16)} provider_accounts[5]: name exactly one owner: application (an application "
        "or the shared pool id) or gateway: true",
    ]


def test_a_workspace_and_a_project_of_one_id_are_one_account():
    text = EXAMPLE + "  - {provider: anthropic, project: wrkspc_contracts, gateway: true}\n"
    with pytest.raises(RegistryError) as caught:
        parse_registry(text, source="r.yaml")
    [problem] = caught.value.problems
    assert "anthropic project wrkspc_contracts is mapped twice" in problem.message


def test_accounts_are_stored_with_the_version_and_diffed(books):
    with books.connect() as conn:
        _, stored = load_history(conn).latest()
    example = parse_registry(EXAMPLE)
    assert stored.provider_accounts == example.provider_accounts
    assert stored.claim("openai", None, "proj_search_batch").owner == "search-summaries"
    assert stored.claim("openai", None, "proj_anything").gateway  # the organization's default
    assert stored.claim("anthropic", None, None).gateway  # names no account at all
    assert stored.claim("anthropic", "apikey_9", None).label == "api key apikey_9"
    assert stored.claim("anthropic", None, "wrkspc_9").label == "workspace wrkspc_9"
    assert stored.claim("cometapi", "key", "proj") is None  # no cometapi account is mapped

    without = parse_registry(EXAMPLE.split("\nprovider_accounts:")[0])
    assert "provider_accounts" not in without.to_document()  # older versions keep their hash
    changes = registry_changes(without, example)
    assert list(changes) == ["provider_accounts"]
    assert changes["provider_accounts"].added[0] == "anthropic workspace wrkspc_contracts"
