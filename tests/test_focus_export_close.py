"""FOCUS export of a month being closed: shared-cost splits as allocated rows (1.3+),
reassigned owners, InvoiceId from the reconciled bill, and the metadata files; both backends."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal, localcontext
from fractions import Fraction

import pyarrow.parquet as pq
from factories import AT, ROOT
from test_allocation_helpers import EARLY
from test_reconcile import _bill, _event, _ingest, _row
from typer.testing import CliRunner

from spendtrail.allocation.exceptions import assign, group_id
from spendtrail.allocation.rule_store import save_rules_version
from spendtrail.allocation.rules import load_rules
from spendtrail.bills import read_focus_parquet
from spendtrail.cli.export_cmd import app
from spendtrail.events import AllocationContext, Usage, new_event
from spendtrail.ledger.ingest import Ingester
from spendtrail.ledger.registry_versions import load_history
from spendtrail.periods import parse_period
from spendtrail.reconcile import get_import, parse_tolerance, reconcile
from spendtrail.reports.focus import FocusOptions, export_focus, metadata_paths

pytest_plugins = ("test_allocation_helpers",)  # the `books` fixture

OCTOBER = parse_period("2026-10")
OWNER_TAGS = ("business_unit", "application", "cost_center", "budget_owner")


def export(engine, tmp_path, version="1.3", name=None):
    path = tmp_path / (name or f"focus-{version}.csv")
    export_focus(engine, OCTOBER, path, "csv", FocusOptions(version=version))
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def origin_key(row):
    return (row["ChargePeriodStart"], row["SkuPriceId"], row["ContractedUnitPrice"], row["Tags"])


def save_example_rules(conn) -> None:
    save_rules_version(
        conn,
        load_rules(ROOT / "examples" / "shared-cost-rules.yaml"),
        source_path="rules.yaml",
        actor="test",
    )


def test_shared_pool_rows_become_allocated_rows_that_sum_to_their_origin(books, tmp_path):
    with books.begin() as conn:
        save_example_rules(conn)
        registry = load_history(conn).latest()[1]
    _, origins = export(books, tmp_path, "1.2")  # 1.2 has no split cost allocation
    _, rows = export(books, tmp_path, "1.3")
    pool_origins = {
        origin_key(r): r
        for r in origins
        if json.loads(r["Tags"]).get("application") == "platform-shared"
    }
    assert pool_origins  # the books have pool usage in both October segments

    children = defaultdict(list)
    for row in rows:
        if row["AllocatedMethodId"]:
            children[origin_key(row)].append(row)
        else:
            assert json.loads(row["Tags"]).get("application") != "platform-shared"
    assert children.keys() == pool_origins.keys()
    exact_ratios = {}
    for key, split in children.items():
        origin = pool_origins[key]
        details = [json.loads(r["AllocatedMethodDetails"]) for r in split]
        ratios = [Decimal(str(d["Elements"][0]["AllocatedRatio"])) for d in details]
        assert sum(ratios) == 1  # exactly, across the allocated rows of one origin
        assert sum(Fraction(d["Elements"][0]["x_ExactRatio"]) for d in details) == 1
        for column in (
            "BilledCost",
            "EffectiveCost",
            "ListCost",
            "ContractedCost",
            "PricingQuantity",
            "ConsumedQuantity",
        ):
            assert sum(Decimal(r[column]) for r in split) == Decimal(origin[column]), column
        with localcontext() as ctx:
            ctx.prec = 80
            for row, ratio in zip(split, ratios, strict=True):
                # The charge is dealt in whole pico-units (so each recipient's rows add up to
                # its allocation entry): a row is within a pico-unit or two of its ratio.
                exact_share = Decimal(origin["BilledCost"]) * ratio
                assert abs(Decimal(row["BilledCost"]) - exact_share) <= Decimal("2E-12")
                assert Decimal(row["ListUnitPrice"]) * Decimal(row["PricingQuantity"]) == Decimal(
                    row["ListCost"]
                )
        for row, detail in zip(split, details, strict=True):
            owner = registry.applications[row["AllocatedResourceId"]]
            assert row["AllocatedResourceName"] == owner.name
            assert json.loads(row["AllocatedTags"]) == {
                "business_unit": owner.business_unit,
                "application": owner.id,
                "cost_center": owner.cost_center,
                "budget_owner": owner.budget_owner,
            }
            exact_ratios[detail["x_RuleId"], row["AllocatedResourceId"]] = Fraction(
                detail["Elements"][0]["x_ExactRatio"]
            )
    # The rules' own ratios (tests/test_allocation_shared.py derives them by hand).
    assert exact_ratios[("platform-proportional-q4", "contract-review")] == Fraction(25, 28)
    assert exact_ratios[("platform-proportional-q4", "search-summaries")] == Fraction(3, 28)
    assert exact_ratios[("platform-fixed-oct-h2", "support-assistant")] == Fraction(1, 5)
    # support-assistant had no direct cost in the proportional segment: share 0, no row.
    assert ("platform-proportional-q4", "support-assistant") not in exact_ratios
    assert {r["AllocatedMethodId"] for rows_ in children.values() for r in rows_} == {
        "spendtrail-shared-cost/proportional",
        "spendtrail-shared-cost/fixed",
    }
    # Nothing is lost or made up: the file sums to the same as the unsplit 1.2 file.
    assert sum(Decimal(r["BilledCost"]) for r in rows) == sum(
        Decimal(r["BilledCost"]) for r in origins
    )


def test_reassigned_rows_carry_their_new_owner_and_rejected_tags_never_appear(books, tmp_path):
    claimed = new_event(
        started_at=AT,
        provider="cometapi",
        model_requested="gpt-4o-mini",
        context=AllocationContext(
            application="search-summaries",
            environment="production",
            workload_class="batch",
            cost_center="CC-999",
        ),
        usage=Usage(input_tokens=1000, output_tokens=500),
    )
    report = Ingester(books).ingest_events([claimed])
    assert report.quarantined == 1
    _, before = export(books, tmp_path, name="before.csv")
    for row in before:
        tags = json.loads(row["Tags"])
        assert tags.get("cost_center") != "CC-999"
        if row["x_AllocationStatus"] == "quarantined":
            assert not set(OWNER_TAGS) & set(tags)

    with books.begin() as conn:
        assign(
            conn,
            application="contract-review",
            actor="ana",
            reason="theirs",
            group=group_id("unknown_application", "ghost-app"),
        )
        assign(
            conn,
            application="search-summaries",
            actor="ana",
            reason="bad cost center",
            event_ids=[claimed.event_id],
        )
        registry = load_history(conn).latest()[1]
    _, rows = export(books, tmp_path, name="after.csv")
    reassigned = [r for r in rows if r["x_AllocationStatus"] == "reassigned"]
    assert {json.loads(r["x_ClaimedOwner"]).get("application") for r in reassigned} == {
        "ghost-app",
        "search-summaries",
    }
    for row in reassigned:
        tags, claim = json.loads(row["Tags"]), json.loads(row["x_ClaimedOwner"])
        owner = registry.applications[tags["application"]]
        assert tags == {
            "business_unit": owner.business_unit,
            "application": owner.id,
            "cost_center": owner.cost_center,
            "budget_owner": owner.budget_owner,
            "environment": "production",
            "workload_class": "batch",
            "allocation_status": "reassigned",
        }
        assert (
            tags["application"]
            == {"ghost-app": "contract-review", "search-summaries": "search-summaries"}[
                claim["application"]
            ]
        )
    assert not any(json.loads(r["Tags"]).get("cost_center") == "CC-999" for r in rows)
    # The untagged group was not assigned: still quarantined, still without an owner.
    still = [r for r in rows if r["x_AllocationStatus"] == "quarantined"]
    assert still and all(not set(OWNER_TAGS) & set(json.loads(r["Tags"])) for r in still)


def test_invoice_id_appears_once_the_bill_is_reconciled(seeded, tmp_path):
    _ingest(seeded, [_event("r", input_tokens=777, output_tokens=333)])
    _, rows = export(seeded, tmp_path, "1.4", name="open.csv")
    assert rows and all(r["InvoiceId"] == r["InvoiceDetailId"] == "" for r in rows)

    failing = _bill(seeded, tmp_path, [_row("r", tokens=(777, 333), quota=999)], "high.csv")
    assert (
        reconcile(seeded, period=OCTOBER, bill_id=failing, reviewer="Ben", actor="ana").result
        == "fail"
    )
    _, rows = export(seeded, tmp_path, "1.4", name="failed.csv")
    assert all(r["InvoiceId"] == "" for r in rows)  # a failed reconciliation names no invoice

    bill = _bill(seeded, tmp_path, [_row("r", tokens=(777, 333), quota=158)])
    record = reconcile(
        seeded,
        period=OCTOBER,
        bill_id=bill,
        reviewer="Ben",
        actor="ana",
        tolerance=parse_tolerance("1%"),
    )
    assert record.result == "pass"
    with seeded.connect() as conn:
        sha256 = get_import(conn, bill).sha256
    for version in ("1.2", "1.3", "1.4"):
        _, rows = export(seeded, tmp_path, version, name=f"closed-{version}.csv")
        assert {r["InvoiceId"] for r in rows} == {f"sha256:{sha256[:16]}"}
    details = [r["InvoiceDetailId"] for r in rows]
    assert all(details) and len(set(details)) == len(details)


def test_metadata_files_describe_the_export(books, tmp_path):
    schema_ids = {}
    for version in ("1.2", "1.3", "1.4"):
        header, rows = export(books, tmp_path, version)
        paths = metadata_paths(tmp_path / f"focus-{version}.csv")
        generator, schema, reference = (
            json.loads(paths[p].read_text()) for p in ("data_generator", "schema", "metadata")
        )
        assert generator == {"DataGenerator": "spendtrail"}
        assert schema["FocusVersion"] == version
        assert [c["ColumnName"] for c in schema["ColumnDefinition"]] == header
        assert {c["DataType"] for c in schema["ColumnDefinition"]} <= {
            "STRING",
            "DECIMAL",
            "DATETIME",
            "JSON",
        }
        created = datetime.strptime(schema["CreationDate"], "%Y-%m-%dT%H:%M:%SZ")
        assert abs(created.replace(tzinfo=UTC) - datetime.now(UTC)).total_seconds() < 3600
        assert reference["SchemaId"] == schema["SchemaId"]
        assert reference["data_location"] == [
            {
                "filepath": f"focus-{version}.csv",
                "total_bytes": (tmp_path / f"focus-{version}.csv").stat().st_size,
                "total_rows": len(rows),
            }
        ]
        schema_ids[version] = schema["SchemaId"]
    assert len(set(schema_ids.values())) == 3  # another structure, another schema
    export(books, tmp_path, "1.3", name="again.csv")  # the same structure keeps its id
    again = json.loads(metadata_paths(tmp_path / "again.csv")["schema"].read_text())
    assert again["SchemaId"] == schema_ids["1.3"]


def test_cli_selects_the_version(books, cli_ledger, tmp_path):
    runner = CliRunner()
    out = tmp_path / "oct.csv"
    result = runner.invoke(
        app,
        [
            "focus",
            "--period",
            "2026-10",
            "--output",
            str(out),
            "--focus-version",
            "1.4",
            "--billing-account-name",
            "Acme",
        ],
    )
    assert result.exit_code == 1, result.output  # the books hold one unpriced event
    assert "FOCUS 1.4" in result.stdout and "oct.schema.json" in result.stdout
    with out.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert "ProviderName" not in rows[0] and rows[0]["ServiceProviderName"] == "CometAPI"
    assert {r["BillingAccountName"] for r in rows} == {"Acme"}
    assert {r["ChargePeriodStart"][:10] for r in rows} >= {EARLY.isoformat()}
    result = runner.invoke(
        app, ["focus", "--period", "2026-10", "--output", str(out), "--focus-version", "1.1"]
    )
    assert result.exit_code == 2


def test_allocated_rows_stay_exact_in_parquet(books, tmp_path):
    with books.begin() as conn:
        save_example_rules(conn)
    _, rows = export(books, tmp_path, "1.3")
    path = tmp_path / "focus.parquet"
    export_focus(books, OCTOBER, path, "parquet", FocusOptions(version="1.3"))
    table = pq.read_table(path).to_pylist()
    assert len(table) == len(rows) and any(r["AllocatedMethodId"] for r in rows)
    for got, want in zip(table, rows, strict=True):
        for column in ("BilledCost", "ListCost", "PricingQuantity", "ConsumedQuantity"):
            assert got[column] == Decimal(want[column]), column
        assert (got["AllocatedMethodDetails"] or "") == want["AllocatedMethodDetails"]
    # spendtrail's own FOCUS importer reads the allocated rows back to the same total.
    items = list(read_focus_parquet(path))
    assert sum(i.amount for i in items) == sum(Decimal(r["BilledCost"]) for r in rows)
