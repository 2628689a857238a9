"""The YAML price sheet: the example loads, numbers stay exact, problems name FILE:LINE."""

from __future__ import annotations

import textwrap
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from spendtrail.errors import SpendtrailError
from spendtrail.events.model import Usage
from spendtrail.ledger.prices import add_entries, load_catalog
from spendtrail.pricing import Catalog, SheetError, load_sheet, price_usage

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "prices.yaml"

DEFAULTS = """\
defaults:
  provider: cometapi
  effective_from: 2026-01-01
  source_url: https://api.cometapi.com/pricing
  checked_at: 2026-11-20
  checked_by: ana
"""


def sheet(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "prices.yaml"
    path.write_text(text)
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(SheetError) as info:
        load_sheet(path)
    return [str(problem) for problem in info.value.problems]


def test_the_example_sheet_loads():
    entries = load_sheet(EXAMPLE)
    assert [e.model_match for e in entries] == [
        "gpt-4o-mini", "gpt-4.1-mini", "gpt-4o", r"^claude-sonnet-4(-\d{8})?$",
        "text-embedding-3-small", "dall-e-3"]
    assert {(e.provider, e.kind, e.currency) for e in entries} == {
        ("cometapi", "contracted", "USD")}
    assert all(e.checked_at == date(2026, 11, 20) and e.checked_by and e.source_url
               for e in entries)
    assert all(e.origin.startswith("sheet prices.yaml sha256:") for e in entries)
    mini, _, _, sonnet, _, image = entries
    assert mini.prices == {"input_tokens": Decimal("0.15"),
                           "cached_input_tokens": Decimal("0.075"),
                           "output_tokens": Decimal("0.60")}
    assert sonnet.source_url == "https://apidoc.cometapi.com/pricing/about-pricing"
    assert sonnet.tiers[0].above_input_tokens == 200_000
    assert sonnet.matches("claude-sonnet-4-20250514") and not sonnet.matches("claude-sonnet-4-5")
    assert image.prices == {"images": Decimal("0.04")}
    assert mini.effective_from == datetime(2026, 9, 1, tzinfo=UTC)


def test_the_example_prices_events():
    catalog = Catalog(load_sheet(EXAMPLE))
    when = datetime(2026, 11, 21, tzinfo=UTC)
    sonnet = catalog.lookup("cometapi", "claude-sonnet-4", when)
    long = price_usage(Usage(input_tokens=250_000, cache_write_tokens=50_000, output_tokens=1000),
                       sonnet)
    assert long.total == Decimal("0.96") + Decimal("0.3") + Decimal("0.018")
    image = catalog.lookup("cometapi", "dall-e-3", when)
    assert price_usage(Usage(images=2, requests=1), image).total == Decimal("0.08")


def test_numbers_are_read_from_their_text(tmp_path):
    path = sheet(tmp_path, DEFAULTS + textwrap.dedent("""\
    prices:
      - model: m
        prices:
          input_tokens: 0.1
          output_tokens: 1.000001
          images: 1e-3
    """))
    (entry,) = load_sheet(path)
    # through float, 0.1 would be 0.1000000000000000055511151231257827...
    assert entry.prices == {"input_tokens": Decimal("0.1"),
                            "output_tokens": Decimal("1.000001"), "images": Decimal("0.001")}


def test_missing_provenance_is_an_error_naming_the_line(tmp_path):
    path = sheet(tmp_path, textwrap.dedent("""\
    prices:
      - provider: cometapi
        model: gpt-4o
        effective_from: 2026-01-01
        checked_by: ana
        prices: {input_tokens: 2}
    """))
    found = problems(path)
    assert found[0].startswith(f"{path}:2: source_url: missing")
    assert found[1].startswith(f"{path}:2: checked_at: missing")
    assert len(found) == 2


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("    prices: {input_tokens: 0.1234567}",
         "8: prices.input_tokens: 0.1234567 has 7 decimal places; a price per 1M tokens may "
         "have at most 6"),
        ("    prices:\n      imagez: 0.04",
         "9: prices.imagez: unknown meter 'imagez'"),
        ("    prices: {images: 0.04}\n    curency: USD",
         "9: price entry: unknown key 'curency'; did you mean 'currency'? allowed keys: id,"),
        ("    prices: {images: 0.04}\n    checkd_at: 2026-01-01",
         "9: price entry: unknown key 'checkd_at'; did you mean 'checked_at'? allowed keys:"),
        ("    prices: {images: -1}", "8: prices.images: a price cannot be negative"),
        ("    prices: {images: 0.04}\n    effective_to: 2025-12-01",
         "2: effective_to: 2025-12-01 is not after effective_from 2026-01-01"),
        ("    prices: {images: 0.04}\n    match: fuzzy",
         "9: match: expected one of exact, glob, regex, got 'fuzzy'"),
        ("    prices: {images: 0.04}\n    currency: dollars",
         "2: currency: expected a 3-letter ISO 4217 code"),
        ("    prices: {images: 0.04}\n    effective_to: 2026-13-01",
         "9: effective_to: expected a date (YYYY-MM-DD) or a timestamp"),
        ("    prices: {images: 0.04}\n    effective_to: 2026-02-01T10:00:00",
         "9: effective_to: timestamp 2026-02-01T10:00:00 needs a UTC offset"),
        ("    prices: {input_tokens: 1}\n    tiers:\n      - above_input_tokens: lots\n"
         "        prices: {input_tokens: 2}",
         "10: tiers[0].above_input_tokens: expected a whole number of tokens"),
        ("    prices: {input_tokens: 1}\n    match: regex",
         "3: model: regex 'GPT-4o' is matched against the lower-cased model name"),
    ],
)
def test_problems_name_file_line_and_field(tmp_path, entry, expected):
    path = sheet(tmp_path, textwrap.dedent("""\
    prices:
      - provider: cometapi
        model: GPT-4o
        effective_from: 2026-01-01
        source_url: https://api.cometapi.com/pricing
        checked_at: 2026-11-20
        checked_by: ana
    """) + entry + "\n")
    found = problems(path)
    assert found == [f"{path}:{expected}"] or found[0].startswith(f"{path}:{expected}"), found


def test_every_problem_is_reported_at_once(tmp_path):
    path = sheet(tmp_path, DEFAULTS + textwrap.dedent("""\
    prices:
      - model: a
        prices: {input_tokens: 0.0000001}
      - model: b
        prices: {input_tokens: 1}
      - model: c
        prices: {output_tokens: x}
    """))
    with pytest.raises(SheetError) as info:
        load_sheet(path)
    message = str(info.value)
    assert message.splitlines()[0] == f"{path}: 2 problems in the price sheet"
    assert f"{path}:9: prices.input_tokens" in message
    assert f"{path}:13: prices.output_tokens: expected a decimal number" in message


def test_overlapping_entries_in_one_sheet(tmp_path):
    path = sheet(tmp_path, DEFAULTS + textwrap.dedent("""\
    prices:
      - model: gpt-4o
        prices: {input_tokens: 2}
      - model: GPT-4o
        effective_from: 2026-03-01
        prices: {input_tokens: 1.9}
    """))
    assert problems(path) == [f"{path}:10: overlaps the entry at line 8 (same provider, model, "
                              "match and kind, overlapping window)"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ":1: the file is empty; expected a mapping with the keys defaults, prices"),
        ("prices: [\n", ":2: malformed YAML: while parsing a flow node"),
        ("- a\n- b\n", ":1: the price sheet: expected a mapping, got a list"),
        ("defaults: {provider: x}\n", ":1: the price sheet: missing required key 'prices'"),
        ("prices: {a: 1}\n", ":1: prices: expected a list"),
    ],
)
def test_unusable_files(tmp_path, text, expected):
    path = tmp_path / "prices.yaml"
    path.write_text(text)
    assert problems(path)[0].startswith(f"{path}{expected}")


def test_a_missing_file(tmp_path):
    assert "cannot read the price sheet" in problems(tmp_path / "nope.yaml")[0]


def test_importing_a_sheet_twice_changes_nothing(ledger):
    entries = load_sheet(EXAMPLE)
    with ledger.begin() as conn:
        first = add_entries(conn, entries, actor="ana", reason="cometapi contract")
    with ledger.begin() as conn:
        second = add_entries(conn, load_sheet(EXAMPLE), actor="ana")
    assert len(first.added) == 6
    assert (second.added, sorted(second.unchanged)) == ([], sorted(first.added))


def test_re_verifying_a_sheet_moves_checked_at_and_a_price_change_is_refused(ledger, tmp_path):
    text = EXAMPLE.read_text()
    with ledger.begin() as conn:
        add_entries(conn, load_sheet(sheet(tmp_path, text)), actor="ana")
    reverified = text.replace("checked_at: 2026-11-20", "checked_at: 2026-12-20")
    with ledger.begin() as conn:
        result = add_entries(conn, load_sheet(sheet(tmp_path, reverified)), actor="ana")
    assert (len(result.rechecked), result.added) == (6, [])
    with ledger.connect() as conn:
        assert {e.checked_at for e in load_catalog(conn).entries} == {date(2026, 12, 20)}
    repriced = reverified.replace("input_tokens: 2.00", "input_tokens: 1.90")
    with pytest.raises(SpendtrailError, match="gpt-4o@2026-09-01 already exists with other"):
        with ledger.begin() as conn:
            add_entries(conn, load_sheet(sheet(tmp_path, repriced)), actor="ana")
