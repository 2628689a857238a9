"""Closing a month, on SQLite and PostgreSQL: one month with a reassignment, a shared-cost
rule and a billed variance gives every owner one figure in every report (statement,
reconciliation, budget review, unit cost, FOCUS, GL journal), and the owners' charges add up
to the invoice once it is reconciled (to the ledger before). Then the close: blockers,
accepted blockers, immutable entries, snapshots byte for byte, late events and repricings as
adjustments of the next month, reopening audited."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
import typer
from test_reconcile import _bill, _event, _row
from test_reprice import CLOSE_ON_OCT_1, FIXED_MINI, _add_prices
from test_statements import assert_tables_add_up
from typer.testing import CliRunner

from spendtrail.allocation.entries import period_entries, run_allocation
from spendtrail.allocation.exceptions import assign
from spendtrail.allocation.rule_store import save_rules_version
from spendtrail.allocation.rules import parse_rules
from spendtrail.budgets import Budget, save_budget
from spendtrail.cli.reconcile_cmd import reconcile as reconcile_command
from spendtrail.close import CloseError, blockers, close_period, reopen_period
from spendtrail.evidence.budget_review import review_budgets
from spendtrail.ledger.allocation_entries import PeriodClosedError, load_snapshot
from spendtrail.ledger.ingest import Ingester
from spendtrail.ledger.reprice import reprice
from spendtrail.ledger.schema import audit_log
from spendtrail.money import from_pico, to_pico
from spendtrail.periods import parse_period
from spendtrail.reconcile import reconcile
from spendtrail.reports.chargeback import Scope, build_statement
from spendtrail.reports.focus import FocusOptions, export_focus, focus_rows
from spendtrail.reports.gl_journal import gl_lines, to_csv
from spendtrail.reports.statement_file import statement_document
from spendtrail.reports.statement_view import to_markdown
from spendtrail.reports.unit_cost import BUILT_IN, unit_costs

OCTOBER, NOVEMBER = parse_period("2026-10"), parse_period("2026-11")
MINI = 450_000_000  # one gpt-4o-mini call of 1000 + 500 tokens, pico-USD (225 quota)
QUOTA_PICO = 2_000_000
CALLS = [
    ("s1", "search-summaries"),
    ("s2", "search-summaries"),
    ("s3", "search-summaries"),
    ("s4", "search-summaries"),
    ("c1", "contract-review"),
    ("c2", "contract-review"),
    ("p1", "platform-shared"),
    ("p2", "platform-shared"),
    ("g1", "ghost-app"),
]
OVERBILLED = {"s1", "c1"}  # billed one quota unit more than the ledger's price
LEDGER_TOTAL = len(CALLS) * MINI
BILLED = LEDGER_TOTAL + len(OVERBILLED) * QUOTA_PICO
RULES = """\
rules:
  - id: pool-by-usage
    pool: platform-shared
    method: proportional
    effective_from: 2026-10-01
    reviewed_by: finance
    reviewed_at: 2026-09-30
"""
OWNERS = ("contract-review", "search-summaries")


def call(rid: str, app: str):
    return _event(rid, app=app, input_tokens=1000, output_tokens=500)


@pytest.fixture
def month(seeded, tmp_path):
    """October: nine calls, one quarantined (ghost-app) and reassigned to contract-review,
    two of the shared pool split by a stored proportional rule, and budgets."""
    items = [call(rid, app) for rid, app in CALLS]
    assert Ingester(seeded).ingest_events(items).inserted == len(items)
    ghost = next(e.event_id for e, (_, app) in zip(items, CALLS, strict=True) if app == "ghost-app")
    with seeded.begin() as conn:
        assign(
            conn,
            application="contract-review",
            actor="ana",
            reason="ghost is contracts",
            event_ids=[ghost],
        )
        save_rules_version(conn, parse_rules(RULES), source_path="rules.yaml", actor="ana")
        for app in OWNERS:
            save_budget(
                conn,
                Budget(
                    id=f"{app}-month",
                    scope="application",
                    scope_value=app,
                    period="month",
                    limit_units=10**12,
                    currency="USD",
                ),
                actor="ana",
                reason="close test",
            )
    return seeded


def reconciled(engine, tmp_path) -> int:
    """Import October's bill and reconcile it (a pass); returns the bill's id."""
    rows = [_row(rid, quota=225 + (rid in OVERBILLED)) for rid, _ in CALLS]
    bill = _bill(engine, tmp_path, rows)
    record = reconcile(engine, period=OCTOBER, bill_id=bill, reviewer="ana", actor="ana")
    assert record.result == "pass"
    assert record.billed_pico == BILLED
    return bill


def figures(engine, period=OCTOBER) -> dict[str, dict[str, int]]:
    with engine.connect() as conn:
        return period_entries(conn, period).charges()


def every_report(engine) -> dict[str, dict[str, int]]:
    """Each owner's figure as each report states it, in pico-USD."""
    found: dict[str, dict[str, int]] = {}
    with engine.connect() as conn:
        company = build_statement(conn, OCTOBER)
        found["statement"] = {o.owner: o.total()["USD"] for o in company.owners}
        found["own statement"] = {
            app: build_statement(conn, OCTOBER, owner=Scope("application", app)).total()["USD"]
            for app in found["statement"]
        }
        found["unit cost"] = {
            u.owner: to_pico(u.cost) for u in unit_costs(conn, OCTOBER, [BUILT_IN[1]])
        }
        rows, _ = focus_rows(conn, OCTOBER)
        focus: dict[str, int] = {}
        for row in rows:
            owner = row["AllocatedResourceId"] or row["Tags"].get("application")
            if row["x_AllocationStatus"] != "quarantined" and owner:
                focus[owner] = focus.get(owner, 0) + to_pico(row["EffectiveCost"])
        found["focus"] = focus
        found["gl"] = {
            line["memo"].split(": ")[1].split(" (")[0]: to_pico(Decimal(line["amount"]))
            for line in gl_lines(conn, OCTOBER)
        }
    with engine.begin() as conn:
        review = review_budgets(conn, OCTOBER, actor="ana", open_follow_ups=False)
    found["budget review"] = {
        row.budget_id.removesuffix("-month"): to_pico(Decimal(row.charged.removesuffix(" USD")))
        for row in review.rows
    }
    return found


def test_every_report_gives_every_owner_the_same_figure(month, tmp_path, cli_ledger):
    # Before the bill: the owners' charges add up to the ledger, the pool split away.
    before = figures(month)
    assert sum(m["USD"] for m in before.values()) == LEDGER_TOTAL
    assert set(before) == set(OWNERS)

    bill = reconciled(month, tmp_path)
    with month.begin() as conn:
        stored = run_allocation(conn, OCTOBER, actor="ana")
    kinds = {e.kind for e in stored.entries}
    assert {"direct", "reassigned", "shared", "true_up"} <= kinds
    charges = figures(month)
    assert sum(m["USD"] for m in charges.values()) == BILLED  # the invoice, exactly
    true_up = {e.application: e.amount_pico for e in stored.of("true_up")}
    assert sum(true_up.values()) == BILLED - LEDGER_TOTAL
    # Proportional to matched billed cost: search (4 calls + 1 unit) vs contracts (2 + 1).
    assert true_up["search-summaries"] > true_up["contract-review"] > 0
    shared = stored.of("shared")
    assert sum(e.amount_pico for e in shared) == 2 * MINI
    assert all(
        e.rule_id == "pool-by-usage" and e.rules_version == 1 and "/" in e.ratio for e in shared
    )
    with month.connect() as conn:
        assert period_entries(conn, OCTOBER).source == "stored"

    expected = {app: money["USD"] for app, money in charges.items()}
    reports = every_report(month)
    assert set(reports) == {
        "statement",
        "own statement",
        "unit cost",
        "focus",
        "gl",
        "budget review",
    }
    for report, by_owner in reports.items():
        assert by_owner == expected, report

    # The reconciliation's owner breakdown states the same charges.
    app = typer.Typer()
    app.command()(reconcile_command)
    result = CliRunner().invoke(
        app, ["--reviewer", "ana", "--period", "2026-10", "--bill", str(bill), "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    charged = json.loads(result.output)["charged"]
    assert {owner: to_pico(Decimal(v)) for owner, v in charged.items()} == expected


def test_blockers_are_listed_and_a_close_needs_each_accepted(month, tmp_path):
    with month.connect() as conn:
        found = {b.code for b in blockers(conn, OCTOBER)}
    assert found == {"no_reconciliation"}
    with pytest.raises(CloseError) as refused:
        close_period(month, OCTOBER, actor="ana")
    assert [b.code for b in refused.value.blockers] == ["no_reconciliation"]
    with pytest.raises(CloseError, match="give the reason"):
        close_period(month, OCTOBER, actor="ana", accept={"no_reconciliation": " "})
    result = close_period(
        month, OCTOBER, actor="ana", accept={"no_reconciliation": "bill arrives late; ledger basis"}
    )
    assert sum(m["USD"] for m in result.charges.values()) == LEDGER_TOTAL
    with month.connect() as conn:
        row = conn.execute(
            sa.select(audit_log.c.after, audit_log.c.reason).where(
                audit_log.c.action == "period.close"
            )
        ).one()
    assert "ledger basis" in row.reason
    assert json.loads(row.after)["accepted"] == {
        "no_reconciliation": "bill arrives late; ledger basis"
    }


def test_a_closed_month_is_final_and_late_changes_become_adjustments(month, tmp_path):
    reconciled(month, tmp_path)
    result = close_period(month, OCTOBER, actor="ana")
    assert result.blockers == []
    assert sum(m["USD"] for m in result.charges.values()) == BILLED
    with month.connect() as conn:
        statement, built = statement_document(conn, OCTOBER, Scope(), "md")
        snapshot = load_snapshot(conn, "2026-10", "company", "md")
        own, _ = statement_document(conn, OCTOBER, Scope("application", "search-summaries"), "csv")
    assert built is None and snapshot is not None and statement == snapshot[0]
    assert b"PRELIMINARY" not in statement and b"final" in statement
    assert len(result.snapshots) == len({(s, f) for s, f, _ in result.snapshots})
    with month.begin() as conn, pytest.raises(PeriodClosedError):
        run_allocation(conn, OCTOBER, actor="ana")

    # A late October call, and a repricing of October, after the close.
    Ingester(month).ingest_events([call("late", "search-summaries")])
    _add_prices(month, tmp_path, CLOSE_ON_OCT_1, FIXED_MINI)  # a price fix from October 1
    assert reprice(month, OCTOBER, actor="ana", reason="contract rate").changed == len(CALLS) + 1

    assert figures(month) == result.charges  # October's figures do not move
    with month.connect() as conn:
        again, _ = statement_document(conn, OCTOBER, Scope(), "md")
        own_again, _ = statement_document(
            conn, OCTOBER, Scope("application", "search-summaries"), "csv"
        )
        november = period_entries(conn, NOVEMBER)
    assert (again, own_again) == (statement, own)  # byte for byte

    adjustments = november.of("adjustment")
    assert adjustments and all(e.adjusts_period == "2026-10" for e in adjustments)
    assert all("1 events ingested late" in e.detail for e in adjustments)
    direct = {e.application: e for e in adjustments if e.adjusts_kind == "direct"}
    # New price: 1000 x 0.20 + 500 x 0.80 per 1M = 0.0006 USD a call (was 0.00045).
    new_mini = 600_000_000
    assert direct["search-summaries"].amount_pico == 5 * new_mini - 4 * MINI
    assert direct["search-summaries"].adjusts_entry_id is not None
    # The bill did not change, so the true-up takes back what the ledger added: October's
    # charges plus its adjustments still equal the invoice.
    charged = sum(e.amount_pico for e in adjustments if e.charged)
    assert charged == 0
    assert sum(m["USD"] for m in november.charges().values()) == 0

    # The adjustments are stored with November, and reported there.
    with month.begin() as conn:
        run_allocation(conn, NOVEMBER, actor="ana")
    with month.connect() as conn:
        nov = build_statement(conn, NOVEMBER)
        assert period_entries(conn, NOVEMBER).source == "stored"
    shown = {o.owner: o.adjustments["USD"] for o in nov.owners if o.adjustments.get("USD")}
    assert shown == {app: money["USD"] for app, money in november.charges().items() if money["USD"]}
    assert shown["search-summaries"] > 0 > shown["contract-review"]
    assert sum(shown.values()) == 0
    # Shown rounded, every table still adds up: the breakdowns carry the true-up and the
    # adjustments as lines of their own.
    with month.connect() as conn:
        october = build_statement(conn, OCTOBER)
    for shown_statement in (october, nov):
        for decimals in (2, 6, 12):
            text = to_markdown(shown_statement, decimals)
            assert len(assert_tables_add_up(text)) == 1
    assert "True-up to the bill" in to_markdown(october, 6).split("## By model")[1]
    assert "Adjustments of closed months" in to_markdown(nov, 6).split("## By model")[1]


def test_reopening_is_audited_and_drops_the_snapshots(month, tmp_path):
    reconciled(month, tmp_path)
    close_period(month, OCTOBER, actor="ana")
    with pytest.raises(CloseError, match="already closed"):
        close_period(month, OCTOBER, actor="ana")
    with pytest.raises(CloseError, match="needs a reason"):
        reopen_period(month, OCTOBER, actor="ana", reason="")
    reopen_period(month, OCTOBER, actor="ana", reason="bill corrected by the provider")
    with month.connect() as conn:
        row = conn.execute(
            sa.select(audit_log.c.before, audit_log.c.reason).where(
                audit_log.c.action == "period.reopen"
            )
        ).one()
        assert load_snapshot(conn, "2026-10", "company", "md") is None
        statement, built = statement_document(conn, OCTOBER, Scope(), "md")
    assert row.reason == "bill corrected by the provider"
    assert "company md" in json.loads(row.before)["snapshots"]
    assert built is not None and b"PRELIMINARY" in statement
    with month.begin() as conn:  # open again: its entries can be recomputed
        run_allocation(conn, OCTOBER, actor="ana")
    close_period(month, OCTOBER, actor="ana")


def test_gl_journal_lines_add_up_to_the_charges(month, tmp_path):
    reconciled(month, tmp_path)
    with month.connect() as conn:
        lines = gl_lines(conn, OCTOBER, "AI-CLEARING-2000")
    assert {line["credit_account"] for line in lines} == {"AI-CLEARING-2000"}
    assert {line["date"] for line in lines} == {"2026-10-31"}
    assert [line["debit_cost_center"] for line in lines] == ["CC-100", "CC-200"]
    assert sum(Decimal(line["amount"]) for line in lines) == from_pico(BILLED)
    assert all("(preliminary)" in line["memo"] for line in lines)
    parsed = list(csv.DictReader(io.StringIO(to_csv(lines))))
    assert parsed == lines


def test_the_cli_closes_reads_the_snapshot_exports_gl_and_reopens(month, cli_ledger, tmp_path):
    from spendtrail.cli.app import app

    runner = CliRunner()
    check = runner.invoke(app, ["close", "--period", "2026-10", "--check"])
    assert check.exit_code == 1 and "BLOCKER no_reconciliation" in check.output
    unpaired = runner.invoke(app, ["close", "--period", "2026-10", "--accept", "unallocated"])
    assert unpaired.exit_code != 0 and "one --reason per --accept" in unpaired.output
    closed = runner.invoke(
        app,
        ["close", "--period", "2026-10", "--accept", "no_reconciliation", "--reason", "bill late"],
    )
    assert closed.exit_code == 0, closed.output
    assert "2026-10 closed" in closed.output
    statement = runner.invoke(
        app, ["report", "chargeback", "--period", "2026-10", "--format", "csv"]
    )
    with month.connect() as conn:
        snapshot = load_snapshot(conn, "2026-10", "company", "csv")
    assert statement.exit_code == 0 and snapshot is not None
    assert statement.stdout_bytes == snapshot[0]
    rerun = runner.invoke(app, ["allocation", "run", "--period", "2026-10"])
    assert rerun.exit_code != 0 and "is closed" in rerun.output
    gl = runner.invoke(app, ["export", "gl", "--period", "2026-10"])
    assert gl.exit_code == 0
    lines = list(csv.DictReader(io.StringIO(gl.output)))
    assert sum(Decimal(line["amount"]) for line in lines) == from_pico(LEDGER_TOTAL)
    assert all("(final)" in line["memo"] for line in lines)
    exported = runner.invoke(
        app, ["export", "focus", "--period", "2026-10", "--output", str(tmp_path / "f.csv")]
    )
    assert exported.exit_code == 0, exported.output
    assert "2026-10 is closed: the export taken at its close" in exported.output
    reopened = runner.invoke(app, ["reopen", "--period", "2026-10", "--reason", "bill came"])
    assert reopened.exit_code == 0 and "reopened" in reopened.output
    exported = runner.invoke(
        app, ["export", "focus", "--period", "2026-10", "--output", str(tmp_path / "f.csv")]
    )
    assert exported.exit_code == 0 and "is closed" not in exported.output


def focus_files(engine, tmp_path, name, **options):
    """The month's FOCUS export in every version (CSV) and as Parquet: file -> bytes, and
    the CSV export's summary."""
    files, summary = {}, None
    for version in ("1.2", "1.3", "1.4"):
        path = tmp_path / f"{name}-{version}.csv"
        summary = export_focus(engine, OCTOBER, path, "csv",
                               FocusOptions(version=version, **options))
        files[version] = path.read_bytes()
    parquet = tmp_path / f"{name}.parquet"
    export_focus(engine, OCTOBER, parquet, "parquet", FocusOptions(**options))
    files["parquet"] = pq.read_table(parquet).to_pylist()
    return files, summary


def test_a_closed_months_focus_export_is_the_one_taken_at_its_close(month, tmp_path):
    reconciled(month, tmp_path)
    options = {"billing_account_id": "org-7", "invoice_issuer": "Comet Reseller"}
    at_close, live = focus_files(month, tmp_path, "before", **options)
    plain, _ = focus_files(month, tmp_path, "before-plain")
    result = close_period(month, OCTOBER, actor="ana")
    assert ("FOCUS", "json") in {(scope, fmt) for scope, fmt, _ in result.snapshots}

    Ingester(month).ingest_events([call("late", "search-summaries")])
    _add_prices(month, tmp_path, CLOSE_ON_OCT_1, FIXED_MINI)
    reprice(month, OCTOBER, actor="ana", reason="contract rate")
    with month.connect() as conn:  # the ledger itself moved
        assert focus_rows(conn, OCTOBER)[1].events == len(CALLS) + 1
    closed, summary = focus_files(month, tmp_path, "closed", **options)
    assert closed == at_close  # byte for byte, whichever version, format or options
    assert focus_files(month, tmp_path, "closed-plain")[0] == plain
    assert summary.closed and not live.closed
    assert (summary.events, summary.rows, summary.cost()) == (live.events, live.rows, live.cost())

    reopen_period(month, OCTOBER, actor="ana", reason="late call")
    reopened, summary = focus_files(month, tmp_path, "reopened", **options)
    assert not summary.closed and summary.events == len(CALLS) + 1
    assert reopened["1.3"] != at_close["1.3"]

