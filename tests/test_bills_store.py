"""Bill imports in the ledger: every sample stored exactly, bad rows kept with their line and
reason, the same file refused twice, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from spendtrail.bills import BillFileError, BillLine, BillRowError, read_bill
from spendtrail.cli import bills_cmd
from spendtrail.ledger.schema import (
    BILL_METERS,
    audit_log,
    bill_import_errors,
    bill_imports,
    bill_lines,
)
from spendtrail.money import to_pico
from spendtrail.periods import parse_period
from spendtrail.reconcile import (
    BillStateError,
    DuplicateBillError,
    EmptyBillError,
    ReconcileError,
    import_bill,
    import_errors,
    list_imports,
    reconcile,
    void_bill,
)
from spendtrail.reconcile.store import MAX_PICO

DATA = Path(__file__).parent / "data" / "bills"
SAMPLES = [
    ("cometapi_log.csv", "cometapi-csv", None),
    ("cometapi_log_pages.jsonl", "cometapi-json", None),
    ("openai_costs.json", "openai-costs", None),
    ("openai_usage.jsonl", "openai-usage", None),
    ("anthropic_cost.json", "anthropic-cost", None),
    ("anthropic_usage.json", "anthropic-usage", None),
    ("focus.csv", "focus-csv", None),
    ("acme_bill.csv", "mapped-csv", "acme_mapping.yaml"),
]


@pytest.mark.parametrize(("name", "bill_format", "mapping"), SAMPLES)
def test_each_sample_imports_its_good_rows_exactly_and_keeps_its_bad_rows(
    ledger, name, bill_format, mapping
):
    path, mapping_path = DATA / name, mapping and DATA / mapping
    parsed = [_storable(item) for item in read_bill(path, bill_format, mapping_path)]
    expected_lines = [item for item in parsed if not isinstance(item, BillRowError)]
    expected_errors = [item for item in parsed if isinstance(item, BillRowError)]
    assert expected_lines and expected_errors  # every sample has both

    result = import_bill(ledger, path, bill_format, mapping=mapping_path, actor="ana",
                         batch_size=2)  # several batches even for a small file
    bill = result.bill
    assert (bill.line_count, bill.error_count) == (len(expected_lines), len(expected_errors))
    assert result.errors == expected_errors
    assert bill.first_day == min(line.period_start.date() for line in expected_lines)
    with ledger.connect() as conn:
        stored = conn.execute(
            sa.select(bill_lines).where(bill_lines.c.import_id == bill.id)
            .order_by(bill_lines.c.id)).mappings().all()
        assert list(import_errors(conn, bill)) == [
            BillRowError(str(path), e.line, e.reason, e.item, e.fatal) for e in expected_errors]
        audit = conn.execute(sa.select(audit_log.c.action, audit_log.c.object_id)).all()
    assert audit == [("bills.import", str(bill.id))]
    assert len(stored) == len(expected_lines)
    for row, line in zip(stored, expected_lines, strict=True):
        assert (row["line"], row["charge_kind"], row["provider"], row["granularity"]) == (
            line.line, line.charge_kind, line.provider, line.granularity)
        assert row["amount_pico"] == (None if line.amount is None else to_pico(line.amount))
        assert row["currency"] == line.currency
        meters = {m: row[m] for m in BILL_METERS}
        assert meters == ({m: None for m in BILL_METERS} if line.usage is None
                          else {m: getattr(line.usage, m) for m in BILL_METERS})
        assert (row["provider_request_id"], row["key_name"], row["project"], row["model"]) == (
            line.provider_request_id, line.key_name, line.project, line.model)
        assert row["day"] == line.period_start.date()
        assert _aware(row["period_start"]) == line.period_start
        assert json.loads(row["raw"], parse_float=Decimal) == line.raw


def _storable(item: BillLine | BillRowError) -> BillLine | BillRowError:
    """What the store makes of a parsed item: a line whose amount overflows a BIGINT (the
    Anthropic sample has one) becomes a row error in its place."""
    if isinstance(item, BillRowError) or item.amount is None or abs(
        to_pico(item.amount)) <= MAX_PICO:
        return item
    reason = f"amount: {item.amount} is beyond the largest amount a line can store"
    return BillRowError(item.source, item.line, reason, item.item)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def test_the_same_file_is_refused_the_second_time(ledger, tmp_path):
    path = tmp_path / "october.csv"
    path.write_bytes((DATA / "cometapi_log.csv").read_bytes())
    first = import_bill(ledger, path, "cometapi-csv", actor="ana")
    with pytest.raises(DuplicateBillError, match=f"already imported as bill {first.bill.id}"):
        import_bill(ledger, path, "cometapi-csv", actor="ana")
    with ledger.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(bill_lines)).scalar() == 5
        assert len(list_imports(conn)) == 1
    path.write_bytes(path.read_bytes() + b"\n")  # other bytes, another bill
    assert import_bill(ledger, path, "cometapi-csv", actor="ana").bill.id != first.bill.id


def test_an_amount_finer_than_a_pico_unit_is_a_row_error(ledger, tmp_path):
    page = {"object": "page", "has_more": False, "next_page": None, "data": [{
        "object": "bucket", "start_time": 1748736000, "end_time": 1748822400, "results": [
            {"object": "organization.costs.result", "amount": {"value": v, "currency": "usd"},
             "line_item": None, "project_id": "proj_abc"}
            for v in ("0.0000000000001", "0.25")]}]}
    path = tmp_path / "costs.json"
    path.write_text(json.dumps(page).replace('"0.0000000000001"', "0.0000000000001")
                    .replace('"0.25"', "0.25"))
    result = import_bill(ledger, path, "openai-costs", actor="ana")
    assert result.bill.line_count == 1
    assert [e.reason for e in result.errors] == [
        "amount: 1E-13 has more than 12 decimal places; it cannot be stored exactly"]


def test_bills_cli_import_list_and_errors(cli_ledger):
    runner = CliRunner()
    imported = runner.invoke(bills_cmd.app, ["import", str(DATA / "focus.csv"),
                                             "--format", "focus-csv", "--provider", "openai"])
    assert imported.exit_code == 1, imported.output  # bad rows were reported
    assert "bill 1: 3 lines imported, 6 rows rejected" in imported.stdout
    assert "focus.csv:5: BillingCurrency" in imported.stderr
    again = runner.invoke(bills_cmd.app, ["import", str(DATA / "focus.csv"),
                                          "--format", "focus-csv"])
    assert again.exit_code == 2 and "already imported as bill 1" in again.stderr
    listed = runner.invoke(bills_cmd.app, ["list", "--format", "json"])
    [row] = json.loads(listed.stdout)
    assert (row["id"], row["provider"], row["lines"], row["errors"]) == (1, "openai", 3, 6)
    errors = runner.invoke(bills_cmd.app, ["errors", "1", "--format", "csv"])
    assert errors.stdout.splitlines()[0] == "line,item,reason,fatal"
    assert len(errors.stdout.splitlines()) == 7
    with cli_ledger.connect() as conn:
        assert conn.execute(sa.select(bill_imports.c.imported_by)).scalar() == "ana"


def _counts(ledger) -> tuple[int, ...]:
    with ledger.connect() as conn:
        return tuple(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar()
                     for t in (bill_imports, bill_lines, bill_import_errors, audit_log))


def test_an_import_that_yields_no_line_stores_nothing(ledger, tmp_path):
    path = tmp_path / "october.csv"
    path.write_bytes((DATA / "cometapi_log.csv").read_bytes())
    with pytest.raises(EmptyBillError) as raised:
        import_bill(ledger, path, "focus-csv", actor="ana")  # the wrong format
    assert str(raised.value).startswith(
        f"{path}: no line could be read as focus-csv, so nothing was imported (1 rows "
        f"rejected; the first: {path}:1: missing")
    assert _counts(ledger) == (0, 0, 0, 0)
    right = import_bill(ledger, path, "cometapi-csv", actor="ana")  # its sha256 is free
    assert right.bill.line_count == 5
    header_only = tmp_path / "empty.csv"
    header_only.write_text((DATA / "cometapi_log.csv").read_text().splitlines()[0] + "\n")
    with pytest.raises(EmptyBillError, match=r"as cometapi-csv, so nothing was imported \(0 rows"):
        import_bill(ledger, header_only, None, actor="ana")
    assert _counts(ledger)[0] == 1


@pytest.mark.parametrize(("name", "bill_format", "mapping"), SAMPLES)
def test_the_format_is_detected_when_not_named(ledger, name, bill_format, mapping):
    """mapped-csv is chosen by giving a mapping; every other sample by its own content."""
    result = import_bill(ledger, DATA / name, None, actor="ana",
                         mapping=mapping and DATA / mapping)
    assert result.bill.format == bill_format
    named = sum(isinstance(i, BillLine)
                for i in read_bill(DATA / name, bill_format, mapping and DATA / mapping))
    assert result.bill.line_count == named - (name == "anthropic_cost.json")  # one overflows


def test_an_undetectable_format_is_an_error_listing_the_formats(ledger):
    with pytest.raises(BillFileError) as raised:
        import_bill(ledger, DATA / "acme_bill.csv", None, actor="ana")
    assert str(raised.value) == (
        f"{DATA / 'acme_bill.csv'}: cannot tell the bill format from its header row or JSON "
        "shape; name it with --format, one of: cometapi-csv, cometapi-json, openai-costs, "
        "openai-usage, anthropic-cost, anthropic-usage, focus-csv, focus-parquet, mapped-csv")
    assert _counts(ledger) == (0, 0, 0, 0)


def test_bills_import_exit_codes(cli_ledger, tmp_path):
    """0 every row imported, 1 some rows rejected, 2 nothing imported (docs/reconcile.md)."""
    runner = CliRunner()
    clean = tmp_path / "clean.csv"
    clean.write_text("\n".join((DATA / "cometapi_log.csv").read_text().splitlines()[:2]) + "\n")
    cases = [
        ([str(clean)], 0, "bill 1: 1 lines imported, 0 rows rejected (cometapi-csv,"),
        ([str(DATA / "cometapi_log.csv")], 1, "bill 2: 5 lines imported"),
        ([str(DATA / "focus.csv"), "--format", "cometapi-csv"], 2,
         "no line could be read as cometapi-csv, so nothing was imported"),
        ([str(DATA / "acme_bill.csv")], 2, "cannot tell the bill format"),
        ([str(DATA / "acme_bill.csv"), "--format", "acme"], 2, "unknown bill format 'acme'"),
        ([str(tmp_path / "missing.csv")], 2, "cannot read the file"),
        ([str(clean)], 2, "already imported as bill 1"),
        ([str(DATA / "acme_bill.csv"), "--mapping", str(DATA / "acme_mapping_bad.yaml")], 2,
         "acme_mapping_bad.yaml:"),
    ]
    for args, code, message in cases:
        result = runner.invoke(bills_cmd.app, ["import", *args])
        assert (result.exit_code, message in result.output) == (code, True), (
            args, result.output)
    assert _counts(cli_ledger)[0] == 2


def test_a_voided_bill_frees_its_file_and_cannot_be_reconciled(ledger, tmp_path):
    path = tmp_path / "october.csv"
    path.write_bytes((DATA / "focus.csv").read_bytes())
    wrong = import_bill(ledger, path, "focus-csv", actor="ana", provider="wrong").bill
    with ledger.begin() as conn:
        voided = void_bill(conn, wrong.id, reason="imported for the wrong provider",
                           actor="ben")
    assert (voided.voided_by, voided.void_reason) == ("ben", "imported for the wrong provider")
    assert voided.describe_void().endswith("by ben: imported for the wrong provider")
    again = import_bill(ledger, path, "focus-csv", actor="ana", provider="openai").bill
    assert again.id != wrong.id and again.voided_at is None
    with pytest.raises(DuplicateBillError, match=f"already imported as bill {again.id}"):
        import_bill(ledger, path, "focus-csv", actor="ana")  # the live bill still holds it
    with pytest.raises(ReconcileError, match=f"bill {wrong.id} is voided .* cannot be rec"):
        reconcile(ledger, period=parse_period("2025-06"), bill_id=wrong.id, reviewer="Ben",
                  actor="ana")
    with ledger.begin() as conn:
        with pytest.raises(BillStateError, match=f"bill {wrong.id} is already voided"):
            void_bill(conn, wrong.id, reason="twice", actor="ben")
        with pytest.raises(BillStateError, match="reason: say why"):
            void_bill(conn, again.id, reason=" ", actor="ben")
        with pytest.raises(BillStateError, match="no bill 99"):
            void_bill(conn, 99, reason="x", actor="ben")
        [audit] = conn.execute(
            sa.select(audit_log.c.actor, audit_log.c.object_id, audit_log.c.reason,
                      audit_log.c.before).where(audit_log.c.action == "bills.void")).all()
        lines = conn.execute(sa.select(sa.func.count()).select_from(bill_lines)
                             .where(bill_lines.c.import_id == wrong.id)).scalar()
    assert audit[:3] == ("ben", str(wrong.id), "imported for the wrong provider")
    assert json.loads(audit[3])["sha256"] == wrong.sha256
    assert lines == 3  # kept as evidence


def test_bills_void_command(cli_ledger):
    runner = CliRunner()
    runner.invoke(bills_cmd.app, ["import", str(DATA / "focus.csv"), "--format", "focus-csv"])
    voided = runner.invoke(bills_cmd.app, ["void", "1", "--reason", "wrong provider"])
    assert voided.exit_code == 0, voided.output
    assert "bill 1 (" in voided.stdout and "by ana: wrong provider" in voided.stdout
    assert runner.invoke(bills_cmd.app, ["void", "1"]).exit_code == 2  # --reason is required
    again = runner.invoke(bills_cmd.app, ["void", "1", "--reason", "x"])
    assert again.exit_code == 2 and "already voided" in again.stderr
    reimported = runner.invoke(bills_cmd.app, ["import", str(DATA / "focus.csv"),
                                               "--provider", "openai"])
    assert "bill 2: 3 lines imported" in reimported.stdout
    listed = json.loads(runner.invoke(bills_cmd.app, ["list", "--format", "json"]).stdout)
    assert [row["status"].split(" ")[0] for row in listed] == ["voided", "imported"]
    assert listed[0]["status"].endswith("by ana: wrong provider")
    with cli_ledger.connect() as conn:
        assert conn.execute(sa.select(audit_log.c.actor)
                            .where(audit_log.c.action == "bills.void")).scalar() == "ana"
