"""Any CSV bill through a YAML column mapping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from spendtrail.bills import BillLine, BillRowError, MappingError, load_mapping, read_mapped_csv
from spendtrail.events import Usage

DATA = Path(__file__).parent / "data" / "bills"


def test_mapped_rows():
    mapping = load_mapping(DATA / "acme_mapping.yaml")
    items = list(read_mapped_csv(DATA / "acme_bill.csv", mapping))
    lines = [item for item in items if isinstance(item, BillLine)]
    charge, refund = lines
    assert charge.amount == Decimal("0.0125")  # 1.25 cents
    assert (charge.currency, charge.provider, charge.format) == ("USD", "acme", "mapped-csv")
    assert (charge.charge_kind, charge.granularity) == ("consume", "request")
    # 09:30 in Berlin (summer time) is 07:30 UTC; a timestamp stands for one second.
    assert charge.period_start == datetime(2025, 6, 1, 7, 30, tzinfo=UTC)
    assert charge.period_end - charge.period_start == timedelta(seconds=1)
    assert (charge.provider_request_id, charge.model, charge.key_name) == (
        "acme-1", "acme-large", "team-a",
    )
    assert charge.usage == Usage(input_tokens=1200, output_tokens=300)
    assert charge.raw["Cost (cents)"] == "1.25"
    assert (refund.charge_kind, refund.amount) == ("refund", Decimal("-0.0125"))


def test_mapped_row_errors_name_the_csv_column():
    mapping = load_mapping(DATA / "acme_mapping.yaml")
    errors = [
        item for item in read_mapped_csv(DATA / "acme_bill.csv", mapping)
        if isinstance(item, BillRowError)
    ]
    assert [(error.line, error.reason) for error in errors] == [
        (4, "Request ID: missing; the mapping requires request_id"),
        (5, "Date: expected a timestamp like '%Y-%m-%d %H:%M:%S', got '01/06/2025'"),
        (6, "Kind: expected one of charge, refund, got 'bonus'"),
        (7, "Prompt: expected an integer, got 'ten'"),
    ]


def test_mapping_errors_name_the_mapping_line():
    with pytest.raises(MappingError) as caught:
        load_mapping(DATA / "acme_mapping_bad.yaml")
    source = DATA / "acme_mapping_bad.yaml"
    assert tuple(map(str, caught.value.problems)) == (
        f"{source}:1: currency: missing; give 'currency:' or map columns.currency",
        f"{source}:2: amount_scale: expected units, cents or a positive integer divisor, "
        "got 'tenths'",
        f"{source}:3: timezone: unknown time zone 'Mars/Olympus'",
        f"{source}:4: charge_kinds: map columns.charge_kind to use it",
        f"{source}:5: charge_kinds.charge: expected one of consume, refund, error, topup, "
        "usage, credit, adjustment, purchase, tax, other, got 'spend'",
        f"{source}:9: columns: unknown key 'modle'; did you mean 'model'? allowed keys: "
        "request_id, response_id, key_name, project, model, description, charge_kind, amount, "
        "currency, timestamp, period_start, period_end, input_tokens, cached_input_tokens, "
        "cache_write_tokens, output_tokens, reasoning_tokens, input_audio_tokens, "
        "output_audio_tokens, requests, images",
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("provider: x\ncolumns:\n  model: M\n", "2: columns: map 'timestamp', or both"),
        ("provider: x\ncolumns: [a]\n", "2: columns: expected a mapping"),
        ("provider: x\ncolumns:\n  timestamp: D\n  amount: A\ncurrency: EURO\n",
         "5: currency: expected an ISO 4217 currency code"),
        ("provider: x\nrequired: [model]\ncolumns:\n  timestamp: D\n  requests: N\n",
         "2: required: 'model' is not a mapped column"),
        ("provider: [x\n", "2: malformed YAML: while parsing a flow"),  # where the parser gave up
        ("provider: x\ncharge_kinds: {a: usage}\ncolumns:\n  timestamp: D\n  requests: N\n",
         "2: charge_kinds: map columns.charge_kind to use it"),
    ],
)
def test_mapping_problems(tmp_path, text, problem):
    path = tmp_path / "mapping.yaml"
    path.write_text(text)
    with pytest.raises(MappingError) as caught:
        load_mapping(path)
    assert f"{path}:{problem}" in str(caught.value)


def test_bucket_rows_with_period_columns_and_a_divisor(tmp_path):
    mapping_path = tmp_path / "mapping.yaml"
    mapping_path.write_text(
        "provider: reseller\ncurrency: EUR\namount_scale: 500000\ntimestamp_format: unix\n"
        "columns:\n  period_start: From\n  period_end: To\n  amount: Units\n  project: Team\n"
    )
    bill = tmp_path / "bill.csv"
    bill.write_text("From,To,Units,Team\n1748736000,1748822400,150,t1\n1748822400,1748736000,1,t1\n")
    line, error = read_mapped_csv(bill, load_mapping(mapping_path))
    assert (line.amount, line.currency, line.granularity) == (Decimal("0.0003"), "EUR", "bucket")
    assert (line.charge_kind, line.project, line.usage) == ("usage", "t1", None)
    assert line.period_end - line.period_start == timedelta(days=1)
    assert error.line == 3 and error.reason == "To: expected a time after the period start"


def test_missing_mapped_column_in_the_csv_is_one_file_error(tmp_path):
    bill = tmp_path / "bill.csv"
    bill.write_text("Date,Model\n2025-06-01 00:00:00,m\n")
    (error,) = read_mapped_csv(bill, load_mapping(DATA / "acme_mapping.yaml"))
    assert error.fatal and error.line == 1
    assert error.reason.startswith("missing column(s) named in")
    assert "'Request ID' (for request_id)" in error.reason
