"""FOCUS 1.2 CSV and Parquet importers."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from spendtrail.bills import BillLine, BillRowError, read_focus_csv, read_focus_parquet
from spendtrail.bills.focus import MANDATORY

DATA = Path(__file__).parent / "data" / "bills"


def split(items):
    items = list(items)
    return (
        [item for item in items if isinstance(item, BillLine)],
        [item for item in items if isinstance(item, BillRowError)],
    )


def test_focus_csv_rows():
    lines, _ = split(read_focus_csv(DATA / "focus.csv"))
    assert [line.line for line in lines] == [2, 3, 4]
    usage, credit, per_request = lines
    assert (usage.amount, usage.effective_amount) == (Decimal("0.00375"), Decimal("0.00375"))
    assert (usage.currency, usage.charge_kind, usage.granularity) == ("USD", "usage", "bucket")
    assert (usage.provider, usage.project) == ("OpenAI", "proj_abc")
    assert usage.period_start == datetime(2025, 6, 1, tzinfo=UTC)
    assert usage.period_end == datetime(2025, 6, 2, tzinfo=UTC)
    assert usage.tags == {"owner": "search-team", "environment": "prod", "cost_center": "CC-100"}
    assert usage.description == "gpt-4o-mini input tokens"
    assert usage.raw["SkuId"] == "gpt-4o-mini:input"
    assert (credit.charge_kind, credit.amount, credit.tags) == ("credit", Decimal("-5.00"), {})
    # BilledCost is the amount; EffectiveCost is kept beside it.
    assert per_request.amount == Decimal("0.000150")
    assert per_request.effective_amount == Decimal("0.000120")
    assert per_request.granularity == "request"
    assert (per_request.provider_request_id, per_request.key_name) == ("req_0001", "st_app_search")


def test_focus_csv_errors_name_the_column():
    _, errors = split(read_focus_csv(DATA / "focus.csv"))
    reasons = {error.line: error.reason for error in errors}
    assert sorted(reasons) == [5, 6, 7, 8, 9, 10]
    assert reasons[5] == "BillingCurrency: expected an ISO 4217 currency code, got 'XYZ'"
    assert reasons[6].startswith("ChargeCategory: expected one of Usage, Purchase, Tax, Credit")
    assert reasons[7].startswith("ChargePeriodStart: expected an ISO 8601 UTC date/time ending")
    assert reasons[8] == (
        "ServiceName: missing; expected a value; BilledCost: missing; expected a decimal number"
    )
    assert reasons[9].startswith("Tags: expected a JSON object")
    assert reasons[10] == "ChargePeriodEnd: expected a time after ChargePeriodStart"


def test_focus_csv_missing_mandatory_columns():
    (error,) = read_focus_csv(DATA / "focus_missing_columns.csv")
    assert error.fatal and error.line == 1
    assert error.reason == "missing FOCUS 1.2 mandatory column(s): BilledCost, ChargePeriodEnd"


def _focus_rows() -> list[dict]:
    with (DATA / "focus.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_focus_parquet_typed_columns(tmp_path):
    when = datetime(2025, 6, 1, tzinfo=UTC)
    money = pa.decimal128(18, 9)
    columns = {name: pa.array(["x", "x"]) for name in MANDATORY}
    columns.update(
        BilledCost=pa.array([Decimal("0.003750000"), Decimal("-1")], money),
        EffectiveCost=pa.array([Decimal("0.003"), Decimal("-1")], money),
        ListCost=pa.array([Decimal("0.00375"), Decimal("-1")], money),
        ContractedCost=pa.array([Decimal("0.00375"), Decimal("-1")], money),
        BillingCurrency=pa.array(["USD", "USD"]),
        ChargeCategory=pa.array(["Usage", "Credit"]),
        ChargeClass=pa.array([None, None], pa.string()),
        ProviderName=pa.array(["OpenAI", None]),  # the second row breaks a non-null rule
        Tags=pa.array([[("owner", "search")], None], pa.map_(pa.string(), pa.string())),
    )
    for name in ("ChargePeriodStart", "BillingPeriodStart"):
        columns[name] = pa.array([when, when], pa.timestamp("s", tz="UTC"))
    for name in ("ChargePeriodEnd", "BillingPeriodEnd"):
        columns[name] = pa.array([when.replace(day=2)] * 2, pa.timestamp("s", tz="UTC"))
    path = tmp_path / "focus.parquet"
    pq.write_table(pa.table(columns), path)
    line, error = read_focus_parquet(path)
    assert isinstance(line, BillLine) and line.line == 1 and line.format == "focus-parquet"
    assert (line.amount, line.effective_amount) == (Decimal("0.00375"), Decimal("0.003"))
    assert line.period_start == when and line.tags == {"owner": "search"}
    assert isinstance(error, BillRowError) and error.line == 2
    assert error.reason == "ProviderName: missing; expected a value"


def test_focus_parquet_string_columns_match_the_csv_reading(tmp_path):
    rows = _focus_rows()
    path = tmp_path / "focus.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    from_csv = list(read_focus_csv(DATA / "focus.csv"))
    from_parquet = list(read_focus_parquet(path))
    assert [type(item) for item in from_parquet] == [type(item) for item in from_csv]
    assert [getattr(item, "amount", None) for item in from_parquet] == [
        getattr(item, "amount", None) for item in from_csv
    ]
    assert [item.line for item in from_parquet] == [item.line - 1 for item in from_csv]


def test_focus_parquet_naive_timestamps_are_rejected(tmp_path):
    table = pa.Table.from_pylist(_focus_rows()[:1])
    naive = pa.array([datetime(2025, 6, 1)], pa.timestamp("s"))
    index = table.schema.get_field_index("ChargePeriodStart")
    path = tmp_path / "focus.parquet"
    pq.write_table(table.set_column(index, "ChargePeriodStart", naive), path)
    (error,) = read_focus_parquet(path)
    assert error.reason.startswith("ChargePeriodStart: expected a timestamp with a UTC offset")


@pytest.mark.parametrize("content", [b"", b"not parquet at all"])
def test_focus_parquet_unreadable_file(tmp_path, content):
    path = tmp_path / "focus.parquet"
    path.write_bytes(content)
    (error,) = read_focus_parquet(path)
    assert error.fatal and error.line == 0
