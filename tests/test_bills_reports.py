"""OpenAI and Anthropic cost/usage report pages, and the JSON page reader under them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from spendtrail.bills import (
    BillLine,
    BillRowError,
    read_anthropic_cost,
    read_anthropic_usage,
    read_openai_costs,
    read_openai_usage,
)
from spendtrail.events import Usage

DATA = Path(__file__).parent / "data" / "bills"
JUNE_1 = datetime(2025, 6, 1, tzinfo=UTC)
JUNE_2 = datetime(2025, 6, 2, tzinfo=UTC)


def split(items):
    items = list(items)
    return (
        [item for item in items if isinstance(item, BillLine)],
        [item for item in items if isinstance(item, BillRowError)],
    )


def test_openai_costs_array_of_pages():
    lines, errors = split(read_openai_costs(DATA / "openai_costs.json"))
    assert [(line.line, line.item) for line in lines] == [
        (2, "[0].data[0].results[0]"),
        (2, "[0].data[0].results[1]"),
        (10, "[1].data[0].results[0]"),
    ]
    first, second, third = lines
    # JSON numbers never pass through float: 1.1 stays exactly 1.1.
    assert [line.amount for line in lines] == [Decimal("0.06"), Decimal("1.1"), Decimal(3)]
    assert type(second.amount) is Decimal and str(second.amount) == "1.1"
    assert {line.currency for line in lines} == {"USD"}
    assert (first.description, first.project) == ("gpt-4o-mini, input", "proj_abc")
    assert (first.period_start, first.period_end) == (JUNE_1, JUNE_2)
    assert (first.granularity, first.charge_kind, first.usage) == ("bucket", "usage", None)
    assert (third.project, third.description) == (None, None)
    assert [(error.line, error.item) for error in errors] == [
        (2, "[0].data[0].results[2]"), (10, "[1].data[0].results[1]"), (10, "[1].data[1]"),
    ]
    assert errors[0].reason == "amount.currency: expected an ISO 4217 currency code, got 'xyz'"
    assert errors[1].reason == "amount: expected an object with value and currency"
    assert errors[2].reason.startswith("start_time: expected Unix seconds")


def test_openai_costs_truncated_file_keeps_the_pages_before_it():
    lines, errors = split(read_openai_costs(DATA / "openai_costs_truncated.json"))
    assert [line.amount for line in lines] == [Decimal("0.06")]
    (error,) = errors
    assert error.fatal and error.line == 6  # where the page the file ends inside starts
    assert error.reason.startswith("truncated JSON")


def test_openai_usage_jsonl():
    lines, errors = split(read_openai_usage(DATA / "openai_usage.jsonl"))
    (line,) = lines
    assert line.usage == Usage(
        input_tokens=1000, cached_input_tokens=200, output_tokens=500, requests=5
    )
    assert (line.amount, line.currency) == (None, None)
    assert (line.key_name, line.project) == ("key_abc", "proj_abc")
    assert line.model == "gpt-4o-mini-2024-07-18"
    assert [(error.line, error.item) for error in errors] == [
        (1, "data[0].results[1]"), (2, "data[0].results[0]"), (2, "data[0].results[1]"),
    ]
    assert "exceed input_tokens (200 + 0 > 100)" in errors[0].reason
    assert errors[1].reason == "input_tokens: expected an integer, got '12x'"
    assert errors[2].reason.startswith("num_model_requests: missing")


def test_anthropic_cost_cents_are_converted_exactly():
    lines, errors = split(read_anthropic_cost(DATA / "anthropic_cost.json"))
    assert [line.amount for line in lines] == [
        Decimal("1.2345"), Decimal("0.005"), Decimal("987654321012345678.9012"),
    ]
    tokens = lines[0]
    assert (tokens.project, tokens.model) == ("wrkspc_01XYZ", "claude-sonnet-4-20250514")
    assert tokens.description == "Claude Sonnet 4 Usage - Input Tokens"
    assert tokens.raw["token_type"] == "uncached_input_tokens"
    assert (tokens.period_start, tokens.period_end) == (JUNE_1, JUNE_2)
    assert lines[2].currency == "USD"  # "usd" upper-cased
    assert [(error.item, error.reason.split(":")[0]) for error in errors] == [
        ("data[0].results[2]", "amount"), ("data[1]", "starting_at"),
    ]
    assert "without an offset" in errors[1].reason


def test_anthropic_usage_is_converted_to_inclusive_input():
    lines, errors = split(read_anthropic_usage(DATA / "anthropic_usage.json"))
    (line,) = lines
    # 1500 uncached + 200 cache reads + 1000 + 300 cache writes, 300 of them for 1 hour.
    assert line.usage == Usage(
        input_tokens=3000, cached_input_tokens=200, cache_write_tokens=1300,
        cache_write_1h_tokens=300, output_tokens=500,
    )
    assert (line.key_name, line.project, line.provider) == (
        "apikey_01ABC", "wrkspc_01XYZ", "anthropic",
    )
    (error,) = errors
    assert error.reason == "output_tokens: expected a non-negative integer, got -4"


def _page(start: int, value: str) -> dict:
    return {
        "object": "page",
        "data": [{
            "object": "bucket", "start_time": start, "end_time": start + 86400,
            "results": [{"amount": {"value": value, "currency": "usd"}, "line_item": None}],
        }],
    }


@pytest.mark.parametrize("layout", ["single", "array", "jsonl", "pretty-array"])
def test_page_layouts(tmp_path, layout):
    pages = [_page(1748736000, "0.25"), _page(1748822400, "0.5")]
    if layout == "single":
        pages = pages[:1]
        text = json.dumps(pages[0], indent=2)
    elif layout == "array":
        text = json.dumps(pages)
    elif layout == "jsonl":
        text = "\n".join(json.dumps(page) for page in pages) + "\n"
    else:
        text = json.dumps(pages, indent=1)
    path = tmp_path / "costs.json"
    path.write_text(text)
    amounts = [line.amount for line in read_openai_costs(path)]
    assert amounts == [Decimal("0.25"), Decimal("0.5")][: len(pages)]


def test_large_page_spanning_many_read_blocks(tmp_path):
    # One page much larger than the 64 KiB read block: decoded whole, line numbers intact.
    page = _page(1748736000, "0.001")
    page["data"][0]["results"] *= 5000
    path = tmp_path / "costs.json"
    path.write_text("[\n" + json.dumps(page) + ",\n" + json.dumps(_page(1748822400, "7")) + "\n]")
    lines = list(read_openai_costs(path))
    assert len(lines) == 5001
    assert sum(line.amount for line in lines) == Decimal("12")
    assert lines[-1].line == 3 and lines[-1].item == "[1].data[0].results[0]"


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("", 1, "empty file: expected JSON pages"),
        ('[{"data": []},\n{"data": []} {"data": []}]', 2, "malformed JSON: expected ','"),
        ('[{"data": []},\n{"data": [}]', 2, "malformed JSON: Expecting value"),
        ('{"data": [NaN]}\n', 1, "malformed JSON: NaN is not a number"),
        ('[{"data": []},\n', 2, "truncated JSON: the file ends before the next page"),
        ('[{"data": []}\n', 2, "truncated JSON: expected ',' or ']' between pages"),
    ],
)
def test_page_syntax_errors(tmp_path, text, line, reason):
    path = tmp_path / "costs.json"
    path.write_text(text)
    *_, error = read_openai_costs(path)
    assert isinstance(error, BillRowError)
    assert error.line == line and error.reason.startswith(reason)
