"""CometAPI usage-log importers: the CSV export and JSON log pages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from spendtrail.bills import BillLine, BillRowError, read_cometapi_csv, read_cometapi_json
from spendtrail.events import Usage

DATA = Path(__file__).parent / "data" / "bills"


def split(items):
    items = list(items)
    lines = [item for item in items if isinstance(item, BillLine)]
    errors = [item for item in items if isinstance(item, BillRowError)]
    assert len(lines) + len(errors) == len(items)
    return lines, errors


def test_csv_good_rows_are_exact_and_signed():
    lines, _ = split(read_cometapi_csv(DATA / "cometapi_log.csv"))
    by_line = {line.line: line for line in lines}
    assert sorted(by_line) == [2, 3, 8, 9, 10]

    consume = by_line[2]
    assert consume.amount == Decimal("0.0003")  # quota 150 / 500,000
    assert consume.currency == "USD"
    assert consume.charge_kind == "consume"
    assert consume.granularity == "request"
    assert consume.provider == "cometapi"
    assert consume.format == "cometapi-csv"
    assert consume.provider_request_id == "20250601000000123456"
    assert consume.key_name == "cc-100-search"
    assert consume.model == "gpt-4o-mini"
    start = datetime(2025, 6, 1, tzinfo=UTC)
    assert (consume.period_start, consume.period_end) == (start, start + timedelta(seconds=1))
    # OpenAI-style prompt_tokens already include the cache reads named in `other`.
    assert consume.usage == Usage(
        input_tokens=1000, cached_input_tokens=200, output_tokens=250, requests=1
    )
    assert consume.raw["group"] == "default" and consume.raw["use_time"] == "2"

    refund = by_line[3]
    assert refund.charge_kind == "refund"
    assert refund.amount == Decimal("-0.0003")
    assert refund.usage.requests == 0

    error = by_line[8]  # an ISO created_at, an error row with zero quota
    assert error.charge_kind == "error"
    assert error.amount == 0
    assert error.period_start == datetime(2025, 6, 1, 0, 1, tzinfo=UTC)

    topup = by_line[9]
    assert (topup.charge_kind, topup.amount, topup.key_name) == ("topup", Decimal(10), None)

    claude = by_line[10]  # new-api's Anthropic semantic: prompt_tokens are uncached only
    assert claude.usage == Usage(
        input_tokens=1600, cached_input_tokens=1000, cache_write_tokens=500, output_tokens=40,
        requests=1,
    )
    assert claude.amount == Decimal("0.0018")


def test_csv_bad_rows_are_reported_with_line_and_field():
    _, errors = split(read_cometapi_csv(DATA / "cometapi_log.csv"))
    reasons = {error.line: error.reason for error in errors}
    assert sorted(reasons) == [4, 5, 6, 7, 11, 12]
    assert reasons[4] == "prompt_tokens: expected an integer, got '12a'"
    assert reasons[5].startswith("request_id: missing")
    assert reasons[6].startswith("created_at: expected Unix seconds or an ISO 8601 timestamp")
    assert reasons[7].startswith("quota: expected a non-negative integer, got -150")
    assert reasons[11].startswith("other: expected a JSON object")
    assert "truncated" in reasons[12]
    assert not any(error.fatal for error in errors)
    assert str(errors[0]) == f"{DATA / 'cometapi_log.csv'}:4: {reasons[4]}"


def test_csv_columns_are_found_by_name_in_any_order_and_case():
    (line,) = read_cometapi_csv(DATA / "cometapi_log_reordered.csv")
    assert line.amount == Decimal(1)
    assert line.usage == Usage(input_tokens=20, output_tokens=10, requests=1)
    assert (line.key_name, line.model) == ("cc-300-data", "gpt-4o")
    assert line.provider_request_id == "20250601000000999001"
    assert line.raw["IP"] == "10.0.0.1"


def test_csv_missing_columns_are_one_file_level_error():
    (error,) = read_cometapi_csv(DATA / "cometapi_log_missing_columns.csv")
    assert error.fatal and error.line == 1
    assert error.reason == "missing required column(s): token_name, quota, request_id"


def test_csv_quoted_cell_spanning_lines_keeps_the_start_line(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text(
        "created_at,type,token_name,model_name,prompt_tokens,completion_tokens,quota,"
        "request_id,content\n"
        '1748736000,2,k,m,1,1,5,r1,"two\nlines"\n'
        "1748736001,2,k,m,x,1,5,r2,\n"
    )
    first, second = read_cometapi_csv(path)
    assert first.line == 2 and first.description == "two\nlines"
    assert isinstance(second, BillRowError) and second.line == 4


def test_csv_line_that_is_not_utf8_is_reported_and_skipped(tmp_path):
    path = tmp_path / "log.csv"
    path.write_bytes(
        b"created_at,type,token_name,model_name,prompt_tokens,completion_tokens,quota,request_id\n"
        b"1748736000,2,k,m,1,1,5,r1\n"
        b"1748736000,2,k\xff\xfe,m,1,1,5,r2\n"
        b"1748736000,2,k,m,1,1,5,r3\n"
    )
    first, error, last = read_cometapi_csv(path)
    assert first.amount == Decimal("0.00001") and last.provider_request_id == "r3"
    assert (error.line, error.fatal) == (3, False)
    assert error.reason == "not UTF-8 text: byte 0xff at column 15"


def test_json_pages_in_jsonl_with_a_malformed_line():
    lines, errors = split(read_cometapi_json(DATA / "cometapi_log_pages.jsonl"))
    assert [(line.line, line.item) for line in lines] == [(1, "data[0]"), (3, "data.items[0]")]
    first, refund = lines
    assert first.format == "cometapi-json"
    assert first.amount == Decimal("0.0003")
    assert first.response_id == "chatcmpl-abc123"
    assert first.usage == Usage(input_tokens=1000, output_tokens=250, requests=1)
    assert refund.amount == Decimal("-0.0003") and refund.charge_kind == "refund"
    assert [(error.line, error.item) for error in errors] == [
        (1, "data[1]"), (2, ""), (3, "data.items[1]"),
    ]
    assert errors[0].reason == "prompt_tokens: expected an integer, got Decimal('1.5')"
    assert errors[1].reason.startswith("malformed JSON") and not errors[1].fatal
    assert errors[2].reason == "type: expected a log type 0..6, got 9"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"data": {"total": 0}}', "data: expected a list of log rows, or an object with 'items'"),
        ('{"data": [42]}', "expected a log row object, got int"),
        ("[1]", "expected a page object with 'data', got int"),
    ],
)
def test_json_page_shape_errors(tmp_path, text, reason):
    path = tmp_path / "page.json"
    path.write_text(text)
    (error,) = read_cometapi_json(path)
    assert isinstance(error, BillRowError) and error.reason == reason


def test_csv_misquoted_row_and_a_quote_left_open_at_the_end(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text(
        "created_at,type,token_name,model_name,prompt_tokens,completion_tokens,quota,"
        "request_id,content\n"
        '1748736000,2,k,m,1,1,5,r1,"bad"quote\n'
        "1748736000,2,k,m,1,1,5,r2,ok\n"
        '1748736000,2,k,m,1,1,5,r3,"cut off\nin a quoted cell'
    )
    bad, good, cut = read_cometapi_csv(path)
    assert (bad.line, bad.fatal) == (2, False) and bad.reason.startswith("malformed CSV")
    assert good.provider_request_id == "r2"
    assert cut.line == 4 and cut.reason == "malformed CSV: unexpected end of data"
