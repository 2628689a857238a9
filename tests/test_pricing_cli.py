"""`spendtrail prices`: import, add, list and check against a real ledger on both backends."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

from spendtrail.cli import common
from spendtrail.cli.prices_cmd import app
from spendtrail.ledger.schema import rollups_daily

EXAMPLE = str(Path(__file__).resolve().parents[1] / "examples" / "prices.yaml")


@pytest.fixture
def run(ledger_url, monkeypatch):
    monkeypatch.setenv("SPENDTRAIL_DATABASE_URL", ledger_url)
    monkeypatch.setenv("COLUMNS", "250")  # wide tables: no folded words to assert on
    common.settings.cache_clear()
    common.ledger.cache_clear()
    runner = CliRunner()
    yield lambda *args: runner.invoke(app, list(args))
    common.ledger().dispose()
    common.ledger.cache_clear()
    common.settings.cache_clear()


ADD = [
    "add", "--provider", "cometapi", "--model", "gpt-4o-mini", "--input", "0.12",
    "--cached-input", "0.06", "--output", "0.48", "--effective-from", "2026-11-01",
    "--source-url", "https://api.cometapi.com/pricing", "--checked-at", "2026-11-20",
    "--checked-by", "ana", "--reason", "contract",
]


def test_import_genai_prices_twice(run):
    first = run("import", "genai-prices", "--provider", "anthropic")
    assert first.exit_code == 0, first.output
    added = int(first.stdout.split("added ")[1].split(",")[0])
    assert added > 40
    assert "anthropic claude-sonnet-4-5: price keys with no spendtrail meter" in first.stdout
    again = run("import", "genai-prices", "--provider", "anthropic")
    assert f"added 0, unchanged {added}," in again.stdout


def test_import_genai_prices_unknown_provider(run):
    result = run("import", "genai-prices", "--provider", "cometapi")
    assert result.exit_code == 2
    assert "--provider: genai-prices" in result.stderr
    assert "has no provider 'cometapi'" in result.stderr


def test_import_sheet_and_list(run):
    result = run("import", "sheet", EXAMPLE, "--reason", "cometapi prices")
    assert result.exit_code == 0, result.output
    assert "added 6, unchanged 0" in result.stdout
    listed = run("list", "--provider", "cometapi", "--model", "claude-sonnet-4-20250514",
                 "--format", "json")
    (record,) = json.loads(listed.stdout)
    assert record["kind"] == "contracted"
    assert record["source_url"] == "https://apidoc.cometapi.com/pricing/about-pricing"
    assert (record["checked_at"], record["checked_by"]) == (
        "2026-11-20", "finance.reviewer@example.com")
    assert record["prices"]["output_tokens"] == "12"
    csv = run("list", "--format", "csv", "--at", "2026-11-15").stdout.splitlines()
    assert csv[0].split(",")[:5] == ["provider", "model", "kind", "from", "to"]
    assert len(csv) == 7
    assert run("list", "--format", "csv", "--at", "2026-08-31").stdout == ""


def test_a_bad_sheet_names_file_and_line(run, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("prices:\n  - provider: cometapi\n    model: m\n    prices: {images: 0.1}\n")
    result = run("import", "sheet", str(bad))
    assert result.exit_code == 2
    assert f"{bad}:2: effective_from: missing" in result.stderr
    assert f"{bad}:2: source_url: missing (every price carries its provenance)" in result.stderr


def test_add_then_add_again(run):
    first = run(*ADD)
    assert first.exit_code == 0, first.output
    assert first.stdout.strip() == "contracted:cometapi:gpt-4o-mini@2026-11-01: added"
    assert "unchanged" in run(*ADD).stdout
    (record,) = json.loads(run("list", "--format", "json").stdout)
    assert record["prices"] == {"input_tokens": "0.12", "cached_input_tokens": "0.06",
                                "output_tokens": "0.48"}
    assert record["origin"] == "prices add by test-runner"
    clash = run(*[a if a != "0.12" else "0.13" for a in ADD])
    assert clash.exit_code == 2
    assert "already exists with other prices" in clash.stderr


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("--input", "0.1234567"), "prices.input_tokens: 0.1234567 has 7 decimal places"),
        (("--checked-at", "last week"), "--checked-at: expected a date YYYY-MM-DD"),
        (("--effective-from", "2026-11-01T00:00"), "--effective-from: timestamp"),
        (("--kind", "negotiated"), "kind: expected one of contracted, list"),
    ],
)
def test_add_rejects_bad_input_in_one_line(run, change, message):
    args = list(ADD)
    if change[0] in args:
        args[args.index(change[0]) + 1] = change[1]
    else:
        args += change
    result = run(*args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_check_flags_stale_prices_and_unpriced_models(run, ledger):
    assert run("import", "sheet", EXAMPLE).exit_code == 0
    fresh = run("check", "--as-of", "2026-12-01")
    assert fresh.exit_code == 0, fresh.output
    assert "6 price entries: none older than 30 days on 2026-12-01" in fresh.stdout
    stale = run("check", "--as-of", "2027-01-15", "--cadence-days", "30")
    assert stale.exit_code == 1
    assert "6 prices not checked in the 30 days before 2027-01-15" in stale.stdout
    assert "gpt-4o-mini" in stale.stdout
    with ledger.begin() as conn:
        conn.execute(rollups_daily.insert().values(
            day=date(2026, 11, 21), provider="cometapi", model="mystery-model", events=4,
            unpriced_events=4))
    unpriced = run("check", "--as-of", "2026-12-01")
    assert unpriced.exit_code == 1
    assert "1 models with unpriced or incomplete events" in unpriced.stdout
    assert "mystery-model" in unpriced.stdout
    assert run("check", "--as-of", "2026-12-01", "--period", "2026-10").exit_code == 0
