"""Reconciliation: planted differences found exactly, tolerance boundaries, inconclusive
results, immutable records, the Markdown summary; on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
import typer
from factories import AT
from typer.testing import CliRunner

from spendtrail.cli.reconcile_cmd import reconcile as reconcile_command
from spendtrail.events import AllocationContext, Usage, new_event
from spendtrail.ledger.ingest import Ingester
from spendtrail.ledger.schema import audit_log, reconciliations
from spendtrail.money import to_pico
from spendtrail.periods import parse_period
from spendtrail.reconcile import (
    UNATTRIBUTED,
    ReconcileError,
    import_bill,
    load_reconciliation,
    parse_tolerance,
    reconcile,
)
from spendtrail.reconcile.render import to_json, to_markdown

OCTOBER = parse_period("2026-10")
HEADER = ("created_at,type,token_name,model_name,prompt_tokens,completion_tokens,quota,"
          "is_stream,request_id,group")
# 1000 input + 500 output tokens of gpt-4o-mini at 0.15 / 0.60 USD per 1M = 0.00045 USD,
# which the provider bills as 225 quota (500,000 quota = 1 USD).
COST = Decimal("0.00045")
QUOTA = 225


def _event(rid: str | None, app: str = "search-summaries", at: datetime = AT,
           outcome: str = "success", **usage: int):
    return new_event(
        started_at=at, provider="cometapi", model_requested="gpt-4o-mini",
        provider_request_id=rid, outcome=outcome,
        context=AllocationContext(application=app, environment="production",
                                  workload_class="batch"),
        usage=Usage(**usage) if outcome == "success" else Usage(),
    )


def _row(rid: str, kind: int = 2, tokens: tuple[int, int] = (1000, 500), quota: int = QUOTA,
         at: datetime = AT, key: str = "cc-100-search") -> str:
    return (f"{int(at.timestamp())},{kind},{key},gpt-4o-mini,{tokens[0]},{tokens[1]},{quota},"
            f"false,{rid},default")


def _bill(ledger, tmp_path: Path, rows: list[str], name: str = "bill.csv") -> int:
    path = tmp_path / name
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    return import_bill(ledger, path, "cometapi-csv", actor="ana").bill.id


def _ingest(ledger, items) -> None:
    report = Ingester(ledger).ingest_events(items)
    assert report.inserted == len(items)


@pytest.fixture
def planted(seeded, tmp_path):
    """Ten good requests over two owners, plus one of each planted difference."""
    tokens = {"input_tokens": 1000, "output_tokens": 500}
    good = [_event(f"ok-{n}", app="search-summaries" if n < 6 else "contract-review", **tokens)
            for n in range(10)]
    _ingest(seeded, [
        *good,
        _event("missing", **tokens),  # in the ledger, not billed
        _event("tokens", **tokens),  # billed with other tokens
        _event("price", **tokens),  # same tokens, billed at another price
        _event("refunded", **tokens),  # billed, then refunded
        _event("failed", outcome="upstream_error"),  # the provider's error row
        _event("nov-1", at=datetime(2026, 11, 1, tzinfo=UTC), **tokens),  # another period
    ])
    rows = [_row(f"ok-{n}") for n in range(10)]
    rows += [
        _row("ghost", key="cc-200-ops"),  # billed, not in the ledger
        _row("tokens", tokens=(1000, 600), quota=255),
        _row("price", quota=300),
        _row("refunded"), _row("refunded", kind=6, tokens=(0, 0)),
        _row("failed", kind=5, tokens=(100, 0), quota=0),
        _row("topup", kind=1, tokens=(0, 0), quota=5_000_000),  # a balance purchase
        _row("sept", at=AT - timedelta(days=10)),  # another period
    ]
    return _bill(seeded, tmp_path, rows)


def test_finds_exactly_the_planted_differences(seeded, planted):
    record = reconcile(seeded, period=OCTOBER, bill_id=planted, reviewer="Ben Okafor",
                       actor="ana", tolerance=parse_tolerance("1%"))
    found = {(d.kind, d.provider_request_id) for d in record.differences}
    assert found == {
        ("in_ledger_not_billed", "missing"), ("billed_not_in_ledger", "ghost"),
        ("token_mismatch", "tokens"), ("price_mismatch", "price"), ("refund", "refunded"),
        ("error_billed", "failed"),
    }
    assert len(record.differences) == 6
    by_kind = {d.kind: d for d in record.differences}
    assert by_kind["token_mismatch"].billed_tokens == "1000/600"
    assert by_kind["token_mismatch"].logged_tokens == "1000/500"
    assert by_kind["price_mismatch"].billed_pico == to_pico(Decimal(300) / 500_000)
    assert by_kind["price_mismatch"].logged_pico == to_pico(COST)
    assert by_kind["refund"].billed_pico == -to_pico(COST)
    assert by_kind["in_ledger_not_billed"].owner == "search-summaries"

    logged = 14 * COST  # 10 good + missing + tokens + price + refunded; failed costs 0
    charges = Decimal(12 * QUOTA + 255 + 300) / 500_000  # 10 good, ghost, refunded + two
    assert record.logged_pico == to_pico(logged)
    assert record.consumed_pico == to_pico(charges)
    assert record.refunded_pico == -to_pico(COST)
    assert record.billed_pico == to_pico(charges - COST)
    assert record.variance_pico == record.logged_pico - record.billed_pico
    assert record.counts["matched"] == 14  # every October event but "missing"
    assert record.counts["events"] == 15
    assert record.method == "request"
    assert (record.result, record.within_tolerance) == ("fail", False)

    owners = {o.owner: o for o in record.owners}
    assert owners["search-summaries"].logged_pico == to_pico(10 * COST)
    assert owners["search-summaries"].billed_pico == to_pico(
        Decimal(6 * QUOTA + 255 + 300) / 500_000)  # refunded nets to 0
    assert owners["contract-review"].billed_pico == to_pico(Decimal(4 * QUOTA) / 500_000)
    assert owners[UNATTRIBUTED].billed_pico == to_pico(Decimal(QUOTA) / 500_000)
    assert sum(o.billed_pico for o in record.owners) == record.billed_pico
    assert sum(o.logged_pico for o in record.owners) == record.logged_pico


@pytest.mark.parametrize(("tolerance", "result"), [("10%", "pass"), ("9.99%", "fail")])
def test_tolerance_boundary_is_inclusive(seeded, tmp_path, tolerance, result):
    _ingest(seeded, [_event("only", input_tokens=1000, output_tokens=500)])
    bill = _bill(seeded, tmp_path, [_row("only", quota=250)])  # 0.0005 billed, 0.00045 logged
    record = reconcile(seeded, period=OCTOBER, bill_id=bill, reviewer="Ben",
                       actor="ana", tolerance=parse_tolerance(tolerance))
    assert record.variance_percent == Decimal("-10.0000")
    assert record.result == result
    assert [d.kind for d in record.differences] == ["price_mismatch"]


def test_a_clean_bill_passes_within_the_quota_rounding(seeded, tmp_path):
    # 777 input + 333 output tokens cost 0.00031635 USD, which the log rounds to 158 quota.
    _ingest(seeded, [_event("r", input_tokens=777, output_tokens=333)])
    bill = _bill(seeded, tmp_path, [_row("r", tokens=(777, 333), quota=158)])
    record = reconcile(seeded, period=OCTOBER, bill_id=bill, reviewer="Ben", actor="ana",
                       tolerance=parse_tolerance("1%"))
    assert (record.result, record.differences, record.reasons) == ("pass", [], [])


def test_inconclusive_when_the_bill_does_not_cover_the_ledger_days(seeded, tmp_path):
    _ingest(seeded, [_event("early", input_tokens=1, output_tokens=1),
                     _event("late", at=AT + timedelta(days=3), input_tokens=1, output_tokens=1)])
    bill = _bill(seeded, tmp_path, [_row("late", tokens=(1, 1), quota=1,
                                         at=AT + timedelta(days=3))])
    record = reconcile(seeded, period=OCTOBER, bill_id=bill, reviewer="Ben", actor="ana")
    assert record.result == "inconclusive"
    assert record.reasons == ["the bill covers 2026-10-08..2026-10-08 but the ledger has events "
                              "on 2026-10-05..2026-10-08"]


def test_inconclusive_when_nothing_matches(seeded, tmp_path):
    _ingest(seeded, [_event("a", input_tokens=1000, output_tokens=500)])
    bill = _bill(seeded, tmp_path, [_row("b")])
    record = reconcile(seeded, period=OCTOBER, bill_id=bill, reviewer="Ben", actor="ana")
    assert record.within_tolerance  # same totals, yet nothing matched
    assert (record.result, record.reasons) == (
        "inconclusive", ["nothing in the bill could be matched to the ledger"])


def test_every_run_is_a_new_immutable_record(seeded, planted):
    first = reconcile(seeded, period=OCTOBER, bill_id=planted, reviewer="Ben", actor="ana")
    second = reconcile(seeded, period=OCTOBER, bill_id=planted, reviewer="Dana", actor="ana",
                       tolerance=parse_tolerance("50%"))
    assert second.id != first.id
    with seeded.connect() as conn:
        assert load_reconciliation(conn, first.id) == first
        assert load_reconciliation(conn, second.id) == second
        assert conn.execute(sa.select(sa.func.count()).select_from(reconciliations)).scalar() == 2
        actions = conn.execute(sa.select(audit_log.c.action, audit_log.c.object_id)
                               .where(audit_log.c.action == "reconcile.record")).all()
    assert actions == [("reconcile.record", str(first.id)), ("reconcile.record", str(second.id))]
    assert (first.reviewer, first.result, second.reviewer, second.result) == (
        "Ben", "fail", "Dana", "pass")


def test_markdown_is_the_dated_summary(seeded, planted):
    record = reconcile(seeded, period=OCTOBER, bill_id=planted, reviewer="Ben Okafor",
                       actor="ana")
    text = to_markdown(record)
    assert f"# Reconciliation {record.id}: cometapi, 2026-10" in text
    assert f"| date | {record.created_at:%Y-%m-%d %H:%M} UTC |" in text
    assert "| period | 2026-10 (2026-10-01 to 2026-11-01, end exclusive) |" in text
    assert "| logged | 0.0063 USD |" in text  # 14 x 0.00045
    assert "| billed | 0.00606 USD |" in text  # (12 x 225 + 255 + 300) / 500,000 - 0.00045
    assert "| variance | 0.00024 USD |" in text
    assert "| variance % | 3.9604% |" in text
    assert "| reviewer | Ben Okafor |" in text
    assert "**Result: FAIL**" in text
    assert "| search-summaries | 11 | 0.0045 USD |" in text
    assert f"| {UNATTRIBUTED} | 0 | 0.00 USD | 0.00045 USD | -0.00045 USD |" in text
    assert ("in_ledger_not_billed: 1, billed_not_in_ledger: 1, duplicate_charge: 0, "
            "token_mismatch: 1") in text
    assert "Reviewed by: Ben Okafor on" in text
    document = to_json(record)
    assert (document["billed"], document["variance_percent"]) == ("0.00606", "3.9604")
    assert Counter(d["kind"] for d in document["differences"])["refund"] == 1


def test_reconcile_command_outputs_and_exit_codes(cli_ledger, planted):
    app = typer.Typer()
    app.command()(reconcile_command)
    runner = CliRunner()
    base = ["--period", "2026-10", "--bill", str(planted), "--reviewer", "Ben"]
    as_json = runner.invoke(app, [*base, "--format", "json"])
    assert as_json.exit_code == 1, as_json.output  # fail
    assert json.loads(as_json.stdout)["result"] == "fail"
    as_csv = runner.invoke(app, [*base, "--format", "csv", "--tolerance", "4%"])
    assert as_csv.exit_code == 0
    rows = list(csv.DictReader(as_csv.stdout.splitlines()))
    assert sorted(r["kind"] for r in rows) == sorted([
        "in_ledger_not_billed", "billed_not_in_ledger", "token_mismatch", "price_mismatch",
        "refund", "error_billed"])
    as_md = runner.invoke(app, [*base, "--format", "md"])
    assert as_md.stdout.startswith("# Reconciliation 3: cometapi, 2026-10")
    with cli_ledger.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(reconciliations)).scalar() == 3
    table = runner.invoke(app, base, env={"COLUMNS": "250"})
    assert table.exit_code == 1
    assert "By owner" in table.stdout and "contract-review" in table.stdout
    assert table.stdout.count("in_ledger_not_billed") == 1
    assert table.stdout.rstrip().endswith("result: fail")
    bad = runner.invoke(app, [*base, "--tolerance", "x"])
    assert bad.exit_code == 2 and "tolerance 'x'" in bad.stderr
    missing = runner.invoke(app, ["--period", "2026-10", "--bill", "99", "--reviewer", "Ben"])
    assert missing.exit_code == 2 and "no bill 99" in missing.stderr


def test_a_reviewer_is_required(seeded, planted):
    with pytest.raises(ReconcileError, match="reviewer"):
        reconcile(seeded, period=OCTOBER, bill_id=planted, reviewer=" ", actor="ana")


def test_a_request_billed_across_the_period_boundary(seeded, tmp_path):
    """Billed at 23:59:59 on 31 October, captured at midnight on 1 November."""
    november = datetime(2026, 11, 1, tzinfo=UTC)
    _ingest(seeded, [_event("edge", at=november, input_tokens=1000, output_tokens=500),
                     _event("oct", input_tokens=1000, output_tokens=500),
                     _event("nov", at=november, input_tokens=1000, output_tokens=500)])
    bill = _bill(seeded, tmp_path, [_row("oct"), _row("edge", at=november - timedelta(seconds=1)),
                                    _row("nov", at=november)])
    october = reconcile(seeded, period=OCTOBER, bill_id=bill, reviewer="Ben", actor="ana")
    [edge] = october.differences
    assert (edge.kind, edge.provider_request_id, edge.event_id) == (
        "billed_not_in_ledger", "edge", None)
    assert edge.detail == "its ledger event is on 2026-11-01, outside the period"
    later = reconcile(seeded, period=parse_period("2026-11"), bill_id=bill, reviewer="Ben",
                      actor="ana")
    assert later.differences == []  # billed, if in October: not listed as unbilled
    assert later.variance_pico == to_pico(COST)  # but its cost shows in the variance


def test_a_bill_with_rejected_rows_is_inconclusive_and_lists_them(seeded, tmp_path):
    """A truncated last line would otherwise pass unnoticed: the good rows match exactly."""
    _ingest(seeded, [_event("r", input_tokens=1000, output_tokens=500)])
    path = tmp_path / "truncated.csv"
    path.write_text("\n".join([HEADER, _row("r"), _row("lost")[:25]]) + "\n")
    bill = import_bill(seeded, path, "cometapi-csv", actor="ana").bill.id
    record = reconcile(seeded, period=OCTOBER, bill_id=bill, reviewer="Ben", actor="ana")
    assert record.within_tolerance
    assert record.result == "inconclusive"
    [rejected] = record.differences
    assert (rejected.kind, rejected.bill_line) == ("rejected_row", 3)
    assert rejected.detail.startswith(f"not imported: {path}:3: ")
    assert "cells" in rejected.detail  # the reader's reason: the row has too few cells
    assert record.reasons == [
        f"1 rows of the bill were rejected at import, so the billed total may be incomplete "
        f"(listed as rejected_row; spendtrail bills errors {bill})"]
    assert record.counts["rejected_row"] == 1
    text = to_markdown(record)
    assert "**Result: INCONCLUSIVE** (1 rows of the bill were rejected" in text
    assert "| rejected_row |" in text and f"{path}:3:" in text
    assert to_json(record)["differences"][0]["detail"] == rejected.detail


def test_the_same_request_id_charged_twice_is_a_duplicate_charge(seeded, tmp_path):
    _ingest(seeded, [_event("twice", input_tokens=1000, output_tokens=500)])
    bill = _bill(seeded, tmp_path, [_row("twice"), _row("twice")])
    record = reconcile(seeded, period=OCTOBER, bill_id=bill, reviewer="Ben", actor="ana")
    [duplicate] = record.differences
    assert (duplicate.kind, duplicate.provider_request_id) == ("duplicate_charge", "twice")
    assert duplicate.detail == "the request id is charged 2 times"
    assert duplicate.billed_pico == 2 * to_pico(COST)
    assert duplicate.logged_pico == to_pico(COST)
    assert record.counts["duplicate_charge"] == 1 and record.counts["token_mismatch"] == 0


def test_a_truncated_bill_names_the_line_where_reading_stopped(seeded):
    path = Path(__file__).parent / "data" / "bills" / "openai_costs_truncated.json"
    bill = import_bill(seeded, path, "openai-costs", actor="ana").bill.id
    record = reconcile(seeded, period=parse_period("2025-06"), bill_id=bill, reviewer="Ben",
                       actor="ana")
    assert record.result == "inconclusive"
    assert record.reasons[-1].endswith(
        f"(listed as rejected_row; spendtrail bills errors {bill}); reading stopped at line 6")
    assert [(d.kind, d.bill_line) for d in record.differences if d.kind == "rejected_row"] == [
        ("rejected_row", 6)]
