"""FOCUS export: every column checked against the spec's table per version (1.2, 1.3, 1.4),
on both backends."""

from __future__ import annotations

import csv
import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from factories import AT, event
from typer.testing import CliRunner

from spendtrail.bills import BillRowError, read_focus_csv, read_focus_parquet
from spendtrail.cli.export_cmd import app
from spendtrail.events import AllocationContext, Usage, new_event
from spendtrail.ledger.ingest import Ingester
from spendtrail.ledger.prices import add_entries
from spendtrail.ledger.schema import cost_entries, events
from spendtrail.periods import parse_period
from spendtrail.pricing import load_sheet
from spendtrail.reports.costs import cost_report
from spendtrail.reports.focus import (
    FocusExportError,
    FocusOptions,
    check_rows,
    export_focus,
    focus_rows,
)

# From docs/shared reference focus.md §2 (FOCUS_Spec v1.2 column files): name -> (level,
# type, nullable). Restated here, not imported, so the test checks the code against the spec.
SPEC = {
    "AvailabilityZone": ("R", "String", True), "BilledCost": ("M", "Decimal", False),
    "BillingAccountId": ("M", "String", False), "BillingAccountName": ("M", "String", True),
    "BillingAccountType": ("C", "String", False), "BillingCurrency": ("M", "String", False),
    "BillingPeriodEnd": ("M", "Date", False), "BillingPeriodStart": ("M", "Date", False),
    "CapacityReservationId": ("C", "String", True),
    "CapacityReservationStatus": ("C", "String", True),
    "ChargeCategory": ("M", "String", False), "ChargeClass": ("M", "String", True),
    "ChargeDescription": ("M", "String", True), "ChargeFrequency": ("R", "String", False),
    "ChargePeriodEnd": ("M", "Date", False), "ChargePeriodStart": ("M", "Date", False),
    "CommitmentDiscountCategory": ("C", "String", True),
    "CommitmentDiscountId": ("C", "String", True),
    "CommitmentDiscountName": ("C", "String", True),
    "CommitmentDiscountQuantity": ("C", "Decimal", True),
    "CommitmentDiscountStatus": ("C", "String", True),
    "CommitmentDiscountType": ("C", "String", True),
    "CommitmentDiscountUnit": ("C", "String", True),
    "ConsumedQuantity": ("C", "Decimal", True), "ConsumedUnit": ("C", "String", True),
    "ContractedCost": ("M", "Decimal", False), "ContractedUnitPrice": ("C", "Decimal", True),
    "EffectiveCost": ("M", "Decimal", False), "InvoiceId": ("R", "String", True),
    "InvoiceIssuerName": ("M", "String", False), "ListCost": ("M", "Decimal", False),
    "ListUnitPrice": ("C", "Decimal", True), "PricingCategory": ("C", "String", True),
    "PricingCurrency": ("C", "String", True),
    "PricingCurrencyContractedUnitPrice": ("C", "Decimal", True),
    "PricingCurrencyEffectiveCost": ("C", "Decimal", True),
    "PricingCurrencyListUnitPrice": ("C", "Decimal", True),
    "PricingQuantity": ("M", "Decimal", True), "PricingUnit": ("M", "String", True),
    "ProviderName": ("M", "String", False), "PublisherName": ("M", "String", False),
    "RegionId": ("C", "String", True), "RegionName": ("C", "String", True),
    "ResourceId": ("C", "String", True), "ResourceName": ("C", "String", True),
    "ResourceType": ("C", "String", True), "ServiceCategory": ("M", "String", False),
    "ServiceName": ("M", "String", False), "ServiceSubcategory": ("R", "String", False),
    "SkuId": ("C", "String", True), "SkuMeter": ("C", "String", True),
    "SkuPriceDetails": ("C", "JSON", True), "SkuPriceId": ("C", "String", True),
    "SubAccountId": ("C", "String", True), "SubAccountName": ("C", "String", True),
    "SubAccountType": ("C", "String", True), "Tags": ("C", "JSON", True),
}
# Required only when pricing and billing currencies differ, then never null: not written.
PRICING_CURRENCY = {"PricingCurrency", "PricingCurrencyContractedUnitPrice",
                    "PricingCurrencyEffectiveCost", "PricingCurrencyListUnitPrice"}
# FOCUS 1.3 adds these (datasets/cost_and_usage/columns at 1.3); 1.4 drops ProviderName and
# PublisherName and adds InvoiceDetailId.
ADDED_1_3 = {
    "AllocatedMethodDetails": ("R", "JSON", True), "AllocatedMethodId": ("R", "String", True),
    "AllocatedResourceId": ("R", "String", True), "AllocatedResourceName": ("R", "String", True),
    "AllocatedTags": ("R", "JSON", True), "ContractApplied": ("C", "JSON", True),
    "HostProviderName": ("M", "String", True), "ServiceProviderName": ("M", "String", False),
}
SPEC_BY_VERSION = {
    "1.2": {k: v for k, v in SPEC.items() if k not in PRICING_CURRENCY},
    "1.3": {k: v for k, v in {**SPEC, **ADDED_1_3}.items() if k not in PRICING_CURRENCY},
    "1.4": {k: v for k, v in {**SPEC, **ADDED_1_3, "InvoiceDetailId": ("M", "String", True)}.items()
            if k not in PRICING_CURRENCY | {"ProviderName", "PublisherName"}},
}
EXTENSIONS = {"x_Meter", "x_PriceEntryId", "x_PriceKind", "x_PriceSourceUrl",
              "x_ListPriceEntryId", "x_AllocationStatus", "x_ClaimedOwner", "x_EventCount"}
# Null only on Correction rows (pricingquantity.md, skupriceid.md, consumedquantity.md).
USAGE_NOT_NULL = {"PricingQuantity", "PricingUnit", "SkuPriceId", "ConsumedQuantity",
                  "ConsumedUnit"}
ALLOWED = {
    "ChargeCategory": {"Usage", "Purchase", "Tax", "Credit", "Adjustment"},
    "ChargeClass": {"", "Correction"},
    "ChargeFrequency": {"One-Time", "Recurring", "Usage-Based"},
    "PricingCategory": {"Standard", "Dynamic", "Committed", "Other"},
    "ServiceCategory": {"AI and Machine Learning"},
    "ServiceSubcategory": {"Generative AI"},
}
UTC_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
PLAIN_DECIMAL = re.compile(r"^-?\d+(\.\d+)?$")  # no exponent, no float artefacts
OWNER = {"business_unit": "consumer", "application": "search-summaries",
         "environment": "production", "workload_class": "batch", "cost_center": "CC-100",
         "budget_owner": "ana.ruiz", "allocation_status": "allocated"}
LIST_SHEET = """
defaults:
  provider: cometapi
  currency: USD
  kind: list
  effective_from: 2026-01-01
  source_url: https://www.cometapi.com/pricing/list
  checked_at: 2026-10-01
  checked_by: finance-partner
prices:
  - model: gpt-4o-mini
    prices: {input_tokens: "0.20", output_tokens: "0.80"}
"""
PERIOD = parse_period("2026-10")


def support_event(**usage):
    return new_event(
        started_at=AT, provider="cometapi", model_requested="gpt-4o-mini",
        context=AllocationContext(application="support-assistant", environment="production"),
        usage=Usage(**usage),
    )


@pytest.fixture
def books(seeded, tmp_path):
    """Priced, cached-token, quarantined, unpriced and out-of-period events."""
    sheet = tmp_path / "list.yaml"
    sheet.write_text(LIST_SHEET)
    with seeded.begin() as conn:
        add_entries(conn, load_sheet(sheet), actor="test")
    later = new_event(**{**_fields(event(model="gpt-4o")),
                         "started_at": AT + timedelta(days=1)})
    november = new_event(**{**_fields(event()), "started_at": datetime(2026, 11, 2, tzinfo=UTC)})
    report = Ingester(seeded).ingest_events([
        event(), event(),  # one group: x_EventCount 2
        support_event(input_tokens=2000, cached_input_tokens=1500, output_tokens=100),
        later,
        event(app="no-such-app"),  # quarantined, still priced
        event(model="mystery-model"),  # unpriced
        november,
    ])
    assert (report.inserted, report.quarantined, report.unpriced) == (7, 1, 1)
    return seeded


def _fields(item):
    return {f: getattr(item, f) for f in item.__struct_fields__ if f != "event_id"}


def read_csv(path):
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


@pytest.mark.parametrize("version", ["1.2", "1.3", "1.4"])
def test_csv_columns_types_and_values(books, tmp_path, version):
    path = tmp_path / "focus.csv"
    summary = export_focus(books, PERIOD, path, "csv",
                           FocusOptions(invoice_issuer="CometAPI", version=version))
    header, rows = read_csv(path)
    spec = SPEC_BY_VERSION[version]

    focus_columns = [c for c in header if not c.startswith("x_")]
    assert focus_columns == sorted(spec)  # FOCUS columns first, in order, then x_ ones
    assert len(focus_columns) == {"1.2": 53, "1.3": 61, "1.4": 60}[version]
    assert set(header) - set(spec) == EXTENSIONS
    assert len(rows) == summary.rows == 9
    for row in rows:
        for column, (_, kind, nullable) in spec.items():
            value = row[column]
            if not nullable or column in USAGE_NOT_NULL:
                assert value != "", f"{column} is null"
            if value == "":
                continue
            if kind == "Decimal":
                assert PLAIN_DECIMAL.match(value), (column, value)
                Decimal(value)
            elif kind == "Date":
                assert UTC_Z.match(value), (column, value)
                assert datetime.fromisoformat(value).utcoffset() == timedelta(0)
            elif kind == "JSON":
                assert isinstance(json.loads(value), dict)
        for column, allowed in ALLOWED.items():
            assert row[column] in allowed, (column, row[column])
        assert row["ChargeCategory"] == "Usage" and row["ChargeFrequency"] == "Usage-Based"
        assert row["BillingCurrency"] == "USD"
        assert row["ServiceName"] == "CometAPI" and row["InvoiceIssuerName"] == "CometAPI"
        if version != "1.4":
            assert row["ProviderName"] == "CometAPI" and row["PublisherName"] == "OpenAI"
        if version != "1.2":  # the reseller sells; the model's vendor hosts the model
            assert row["ServiceProviderName"] == "CometAPI"
            assert row["HostProviderName"] == "OpenAI"
            assert row["AllocatedMethodId"] == row["AllocatedTags"] == ""  # no shared rules
        assert row["BillingAccountId"] == "cometapi"
        assert row["BillingAccountName"] == "CometAPI account"
        assert row["InvoiceId"] == ""  # nothing reconciled yet
        assert row["ConsumedUnit"] == "Tokens" and row["PricingUnit"] == "1000000 Tokens"
        assert Decimal(row["PricingQuantity"]) * 1_000_000 == Decimal(row["ConsumedQuantity"])
        with localcontext() as ctx:
            ctx.prec = 60
            quantity = Decimal(row["PricingQuantity"])
            assert Decimal(row["ListUnitPrice"]) * quantity == Decimal(row["ListCost"])
            assert Decimal(row["ContractedUnitPrice"]) * quantity == Decimal(row["ContractedCost"])
        assert row["EffectiveCost"] == row["BilledCost"] == row["ContractedCost"]
        start = datetime.fromisoformat(row["ChargePeriodStart"])
        assert datetime.fromisoformat(row["ChargePeriodEnd"]) - start == timedelta(days=1)
        assert row["BillingPeriodStart"] == "2026-10-01T00:00:00Z"
        assert row["BillingPeriodEnd"] == "2026-11-01T00:00:00Z"
        assert json.loads(row["Tags"])["allocation_status"] == row["x_AllocationStatus"]
        assert row["SkuId"] == f"{row['SkuPriceId'].split(':')[1]}:{row['x_Meter']}"
        assert not re.search(r"\d{4}-\d{2}-\d{2}", row["SkuPriceId"])  # stable: no date

    # Costs add up exactly to the ledger's for the period (the rollups, read independently).
    with books.connect() as conn:
        ledger_total = cost_report(conn, PERIOD, ()).totals.cost_pico["USD"]
    billed = sum(Decimal(r["BilledCost"]) for r in rows)
    assert billed * 10**12 == ledger_total and summary.cost_pico == {"USD": ledger_total}

    by_key = {(r["ChargePeriodStart"][:10], json.loads(r["Tags"]).get("application"),
               r["x_Meter"], r["SkuId"].split(":")[0]): r for r in rows}
    inputs = by_key[("2026-10-05", "search-summaries", "input_tokens", "gpt-4o-mini")]
    assert json.loads(inputs["Tags"]) == OWNER
    assert (inputs["ConsumedQuantity"], inputs["PricingQuantity"]) == ("2000", "0.002")
    assert (inputs["ContractedUnitPrice"], inputs["ListUnitPrice"]) == ("0.15", "0.2")
    assert (inputs["BilledCost"], inputs["ListCost"]) == ("0.0003", "0.0004")
    assert inputs["x_EventCount"] == "2" and inputs["x_PriceKind"] == "contracted"
    assert inputs["x_PriceEntryId"] != inputs["x_ListPriceEntryId"]
    assert inputs["x_PriceSourceUrl"] == "https://api.cometapi.com/pricing"
    assert inputs["SkuPriceId"] == "cometapi:gpt-4o-mini:input_tokens:contracted"

    # The cached-token event: uncached input, cached input and output as three rows.
    cached = by_key[("2026-10-05", "support-assistant", "cached_input_tokens", "gpt-4o-mini")]
    assert (cached["ConsumedQuantity"], cached["BilledCost"]) == ("1500", "0.0001125")
    assert cached["ContractedUnitPrice"] == "0.075"
    assert cached["ListUnitPrice"] == "0.2"  # the list sheet has no cache price: input's
    uncached = by_key[("2026-10-05", "support-assistant", "input_tokens", "gpt-4o-mini")]
    assert (uncached["ConsumedQuantity"], uncached["BilledCost"]) == ("500", "0.000075")

    # No list entry for gpt-4o: the list price is the contracted one.
    gpt4o = by_key[("2026-10-06", "search-summaries", "output_tokens", "gpt-4o")]
    assert gpt4o["ListUnitPrice"] == gpt4o["ContractedUnitPrice"] == "10"
    assert gpt4o["x_ListPriceEntryId"] == gpt4o["x_PriceEntryId"]
    assert gpt4o["ChargePeriodStart"] == "2026-10-06T00:00:00Z"
    assert gpt4o["ChargePeriodEnd"] == "2026-10-07T00:00:00Z"

    # Quarantined spend carries no owner (the registry rejected its claim); the claim, as
    # captured, is kept apart in x_ClaimedOwner.
    quarantined = [r for r in rows if r["x_AllocationStatus"] == "quarantined"]
    assert len(quarantined) == 2
    for r in quarantined:
        tags = json.loads(r["Tags"])
        assert not {"application", "cost_center", "business_unit", "budget_owner"} & set(tags)
        assert json.loads(r["x_ClaimedOwner"])["application"] == "no-such-app"
    assert all(r["x_ClaimedOwner"] == "" for r in rows if r not in quarantined)

    # Unpriced usage is in no row, and counted.
    assert not any("mystery" in r["SkuId"] for r in rows)
    assert (summary.events, summary.exported_events, summary.unpriced_events) == (6, 5, 1)
    assert dict(summary.unpriced_models) == {("cometapi", "mystery-model"): 1}


def test_parquet_exact_types(books, tmp_path):
    csv_path, parquet_path = tmp_path / "focus.csv", tmp_path / "focus.parquet"
    export_focus(books, PERIOD, csv_path, "csv")
    export_focus(books, PERIOD, parquet_path, "parquet")
    table = pq.read_table(parquet_path)
    _, csv_rows = read_csv(csv_path)
    spec = SPEC_BY_VERSION["1.3"]  # the default
    assert sorted(c for c in table.column_names if not c.startswith("x_")) == sorted(spec)
    for column, (_, kind, _) in spec.items():
        field_type = table.schema.field(column).type
        if kind == "Decimal":
            assert pa.types.is_decimal128(field_type), column
        elif kind == "Date":
            assert pa.types.is_timestamp(field_type) and field_type.tz == "UTC", column
        else:
            assert pa.types.is_string(field_type), column
    assert table.num_rows == len(csv_rows)
    for got, want in zip(table.to_pylist(), csv_rows, strict=True):
        for column, (_, kind, _) in spec.items():
            value = got[column]
            if kind == "Decimal":
                assert (value is None) == (want[column] == "")
                if value is not None:
                    assert value == Decimal(want[column]), column
            elif kind == "Date":
                assert value.tzinfo is not None
                assert value == datetime.fromisoformat(want[column])
            else:
                assert (value or "") == want[column], column
        assert got["x_EventCount"] == int(want["x_EventCount"])


def test_spendtrails_own_importer_reads_the_export(books, tmp_path):
    """The bills FOCUS importer (a separate reader) accepts every row of both formats."""
    for fmt, reader in (("csv", read_focus_csv), ("parquet", read_focus_parquet)):
        path = tmp_path / f"focus.{fmt}"
        summary = export_focus(books, PERIOD, path, fmt)
        items = list(reader(path))
        assert not [i for i in items if isinstance(i, BillRowError)]
        assert len(items) == summary.rows
        assert sum(i.amount for i in items) * 10**12 == summary.cost_pico["USD"]


def test_current_cost_revision_wins(books):
    """A later revision supersedes the first: here it makes one event unpriced."""
    with books.begin() as conn:
        event_id, day = conn.execute(
            sa.select(events.c.event_id, events.c.day).where(events.c.model_requested == "gpt-4o")
        ).one()
        conn.execute(cost_entries.insert().values(
            event_id=event_id, revision=2, status="unpriced", breakdown="{}",
            priced_at=datetime.now(UTC), day=day))
        rows, summary = focus_rows(conn, PERIOD)
    assert not any(r["SkuId"].startswith("gpt-4o:") for r in rows)
    assert summary.unpriced_events == 2


def test_cost_that_disagrees_with_its_price_stops_the_export(books, tmp_path):
    with books.begin() as conn:
        first = conn.execute(
            sa.select(cost_entries).where(cost_entries.c.status == "priced").limit(1)
        ).mappings().one()
        conn.execute(cost_entries.insert().values(
            event_id=first["event_id"], revision=2, status="priced",
            price_entry_id=first["price_entry_id"], currency="USD", amount_pico=1,
            breakdown='{"input_tokens": 1}', priced_at=datetime.now(UTC), day=first["day"]))
    path = tmp_path / "focus.csv"
    with pytest.raises(FocusExportError, match=f"event {first['event_id']}: input_tokens"):
        export_focus(books, PERIOD, path, "csv")
    assert not path.exists()


def test_check_rows_catches_broken_rows(books):
    with books.connect() as conn:
        rows, _ = focus_rows(conn, PERIOD)
    assert check_rows(rows) == []
    rows[0]["ListCost"] += Decimal("0.000000000001")
    rows[1]["ServiceCategory"] = "AI"
    rows[2]["BilledCost"] = None
    rows[3]["ChargePeriodStart"] = rows[3]["ChargePeriodStart"].replace(tzinfo=None)
    assert check_rows(rows) == [
        "row 1: ListUnitPrice x PricingQuantity != ListCost",
        "row 2: ServiceCategory 'AI' is not allowed",
        "row 3: BilledCost is null",
        "row 4: ChargePeriodStart is not a datetime",
    ]


def test_cli_export_reports_unpriced(books, cli_ledger, tmp_path):
    runner = CliRunner()
    out = tmp_path / "oct.parquet"
    result = runner.invoke(app, ["focus", "--period", "2026-10", "--format", "parquet",
                                 "--output", str(out), "--billing-account", "org-123",
                                 "--invoice-issuer", "CometAPI Inc."])
    assert result.exit_code == 1, result.output
    assert "9 FOCUS rows from 5 of 6 events in 2026-10" in result.stdout
    assert "1 unpriced events" in result.stderr and "mystery-model: 1 events" in result.stderr
    table = pq.read_table(out)
    assert set(table.column("BillingAccountId").to_pylist()) == {"org-123"}
    assert set(table.column("InvoiceIssuerName").to_pylist()) == {"CometAPI Inc."}

    csv_out = tmp_path / "nov.csv"
    result = runner.invoke(app, ["focus", "--period", "2026-11", "--output", str(csv_out)])
    assert result.exit_code == 0, result.output
    _, rows = read_csv(csv_out)
    assert len(rows) == 2 and {r["x_Meter"] for r in rows} == {"input_tokens", "output_tokens"}

    result = runner.invoke(app, ["focus", "--period", "2026-13", "--output", str(csv_out)])
    assert result.exit_code == 2 and "expected YYYY-MM" in result.stderr


NOON_LIST_SHEET = """
defaults:
  provider: cometapi
  currency: USD
  kind: list
  source_url: https://www.cometapi.com/pricing/list
  checked_at: 2026-10-01
  checked_by: finance-partner
prices:
  - model: gpt-4o-mini
    effective_from: 2026-01-01
    effective_to: 2026-10-05T12:00:00Z
    prices: {input_tokens: "0.20", output_tokens: "0.80"}
  - model: gpt-4o-mini
    effective_from: 2026-10-05T12:00:00Z
    prices: {input_tokens: "0.30", output_tokens: "1.20"}
"""


def test_a_list_price_changing_within_a_day_lists_each_call_at_its_own_time(seeded, tmp_path):
    sheet = tmp_path / "list.yaml"
    sheet.write_text(NOON_LIST_SHEET)
    with seeded.begin() as conn:
        add_entries(conn, load_sheet(sheet), actor="test")
    calls = [new_event(**{**_fields(event()), "started_at": at}) for at in (
        AT - timedelta(hours=6), AT + timedelta(hours=6), AT + timedelta(days=1))]
    assert Ingester(seeded).ingest_events(calls).inserted == 3
    with seeded.connect() as conn:
        rows, _ = focus_rows(conn, PERIOD)
    listed = {(r["ChargePeriodStart"].date().isoformat(), str(r["ListUnitPrice"]))
              for r in rows if r["x_Meter"] == "input_tokens"}
    # The contracted price (0.15) of all three; the list price of each call's own time.
    assert listed == {("2026-10-05", "0.2"), ("2026-10-05", "0.3"), ("2026-10-06", "0.3")}
