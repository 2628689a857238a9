"""Repricing: new cost entries for changed costs, rollups moved exactly, idempotent, audited."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import msgspec
import pytest
import sqlalchemy as sa
import typer
from factories import SHEET, event
from typer.testing import CliRunner

from spendtrail.cli.reprice_cmd import reprice as reprice_command
from spendtrail.ledger.ingest import Ingester
from spendtrail.ledger.prices import add_entries
from spendtrail.ledger.reprice import reprice
from spendtrail.ledger.schema import audit_log, cost_entries, events, rollups_daily
from spendtrail.periods import parse_period
from spendtrail.pricing import load_sheet
from spendtrail.reports.costs import cost_report
from spendtrail.reports.focus import focus_rows

OCTOBER = parse_period("2026-10")
MINI = 450_000_000  # 1000 input x 0.15/M + 500 output x 0.60/M, in pico-USD
MINI_FIXED = 600_000_000  # the same at 0.20/M and 0.80/M
CLAUDE = 10_500_000_000  # 1000 x 3.00/M + 500 x 15.00/M

CLAUDE_SHEET = """
defaults:
  provider: cometapi
  currency: USD
  kind: contracted
  effective_from: 2026-01-01
  source_url: https://example.com/contract.pdf
  checked_at: 2026-11-01
  checked_by: finance-partner
prices:
  - model: claude-sonnet-4
    prices: {input_tokens: "3.00", output_tokens: "15.00"}
"""
# Closes the sheet's windows on Oct 1 (same ids), then prices gpt-4o-mini anew from there.
CLOSE_ON_OCT_1 = SHEET.replace("  checked_by: finance-partner",
                               "  checked_by: finance-partner\n  effective_to: 2026-10-01")
FIXED_MINI = """
defaults:
  provider: cometapi
  currency: USD
  kind: contracted
  effective_from: 2026-10-01
  source_url: https://api.cometapi.com/pricing
  checked_at: 2026-11-01
  checked_by: finance-partner
prices:
  - model: gpt-4o-mini
    prices: {input_tokens: "0.20", output_tokens: "0.80"}
"""


@pytest.fixture
def books(seeded):
    """Three priced gpt-4o-mini calls, one without usage, two unpriced claude calls in
    October and one in September (outside the period)."""
    september = msgspec.structs.replace(event(app="contract-review", model="claude-sonnet-4"),
                                        started_at=datetime(2026, 9, 30, 23, tzinfo=UTC))
    items = [
        event(), event(), event(app="contract-review"), event(input_tokens=0),
        event(app="contract-review", model="claude-sonnet-4"),
        event(app="contract-review", model="claude-sonnet-4"), september,
    ]
    report = Ingester(seeded).ingest_events(items)
    assert (report.inserted, report.unpriced) == (7, 3)
    return seeded


def _add_prices(engine, tmp_path, *sheets: str) -> None:
    with engine.begin() as conn:
        for n, text in enumerate(sheets):
            path = tmp_path / f"sheet-{n}.yaml"
            path.write_text(text)
            add_entries(conn, load_sheet(path), actor="test")


def _rollup_totals(engine) -> dict[str, tuple[int, int, int, int]]:
    """Per currency: events, unpriced events, input tokens, amount (all days)."""
    r = rollups_daily.c
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(r.currency, sa.func.sum(r.events), sa.func.sum(r.unpriced_events),
                      sa.func.sum(r.input_tokens), sa.func.sum(r.amount_pico))
            .group_by(r.currency)).all()
    return {row[0]: tuple(int(v) for v in row[1:]) for row in rows if row[1]}


def _current_totals(engine) -> dict[str, tuple[int, int, int, int]]:
    """The same figures from each event's current (highest revision) cost entry."""
    e, c = events.c, cost_entries.c
    newer = cost_entries.alias("newer")
    latest = (sa.select(sa.func.max(newer.c.revision))
              .where(newer.c.event_id == e.event_id).scalar_subquery())
    currency = sa.func.coalesce(c.currency, "")
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(currency, e.usage, c.status, c.amount_pico)
            .select_from(events.join(cost_entries, sa.and_(c.event_id == e.event_id,
                                                           c.revision == latest)))).all()
    totals: dict[str, list[int]] = {}
    for cur, usage, status, amount in rows:
        acc = totals.setdefault(cur, [0, 0, 0, 0])
        acc[0] += 1
        acc[1] += status in ("unpriced", "incomplete")
        acc[2] += json.loads(usage).get("input_tokens", 0)
        acc[3] += amount or 0
    return {cur: tuple(acc) for cur, acc in totals.items()}


def _table_counts(engine) -> tuple[int, int, tuple]:
    with engine.connect() as conn:
        entries = conn.execute(sa.select(sa.func.count()).select_from(cost_entries)).scalar()
        audits = conn.execute(sa.select(sa.func.count()).select_from(audit_log)).scalar()
        rollups = tuple(conn.execute(sa.select(rollups_daily).order_by(
            *rollups_daily.primary_key.columns)).all())
    return entries, audits, rollups


def _owners(result) -> dict[tuple[str, str], tuple[int, int, int, int, int]]:
    return {key: (o.changed, o.newly_priced, o.newly_unpriced, o.before_pico, o.after_pico)
            for key, o in result.owners.items()}


def test_a_late_contracted_price_prices_the_unpriced_events(books, tmp_path):
    before = _rollup_totals(books)
    assert before == {"USD": (3, 0, 3000, 3 * MINI), "": (4, 3, 3000, 0)}
    assert reprice(books, OCTOBER, actor="ana").changed == 0  # nothing new in the catalog

    _add_prices(books, tmp_path, CLAUDE_SHEET)
    result = reprice(books, OCTOBER, actor="ana", reason="contract signed late")

    assert result.counts() == {"examined": 6, "changed": 2, "newly_priced": 2,
                               "newly_unpriced": 0}
    assert _owners(result) == {("contract-review", "USD"): (2, 2, 0, 0, 2 * CLAUDE)}
    # The two October claude calls moved from the '' row to USD; September's stays unpriced.
    assert _rollup_totals(books) == {"USD": (5, 0, 5000, 3 * MINI + 2 * CLAUDE),
                                     "": (2, 1, 1000, 0)}
    assert _rollup_totals(books) == _current_totals(books)
    with books.connect() as conn:
        report = cost_report(conn, OCTOBER, ("application",))
    totals = {row.key["application"]: (row.events, row.unpriced_events, row.cost())
              for row in report.rows}
    assert totals["contract-review"] == (3, 0, {"USD": Decimal("0.021450")})


def test_a_price_fix_reprices_amounts_with_a_diff_per_owner(books, tmp_path):
    _add_prices(books, tmp_path, CLOSE_ON_OCT_1, FIXED_MINI)
    result = reprice(books, OCTOBER, actor="ana", batch_size=2)  # several keyset batches

    assert result.counts() == {"examined": 6, "changed": 4, "newly_priced": 0,
                               "newly_unpriced": 0}
    assert _owners(result) == {
        ("search-summaries", "USD"): (2, 0, 0, 2 * MINI, 2 * MINI_FIXED),
        ("contract-review", "USD"): (1, 0, 0, MINI, MINI_FIXED),
        # The call without usage still costs nothing, but now names the entry in effect.
        ("search-summaries", ""): (1, 0, 0, 0, 0),
    }
    assert {r["application"]: str(r["difference"]) for r in result.owner_rows()
            if r["currency"] == "USD"} == {"contract-review": "0.00015",
                                           "search-summaries": "0.0003"}
    assert _rollup_totals(books) == {"USD": (3, 0, 3000, 3 * MINI_FIXED), "": (4, 3, 3000, 0)}
    assert _rollup_totals(books) == _current_totals(books)
    with books.connect() as conn:
        _, focus = focus_rows(conn, OCTOBER)  # reads the current cost entry of each event
    assert (focus.exported_events, focus.cost_pico) == (3, {"USD": 3 * MINI_FIXED})


def test_a_closed_price_makes_its_events_unpriced_again(books, tmp_path):
    _add_prices(books, tmp_path, CLOSE_ON_OCT_1)
    result = reprice(books, OCTOBER, actor="ana")

    assert (result.changed, result.newly_priced, result.newly_unpriced) == (4, 0, 3)
    assert _owners(result)[("search-summaries", "USD")] == (2, 0, 2, 2 * MINI, 0)
    assert _rollup_totals(books) == {"": (7, 6, 6000, 0)}
    assert _rollup_totals(books) == _current_totals(books)


def test_old_entries_stay_and_a_second_run_changes_nothing(books, tmp_path):
    _add_prices(books, tmp_path, CLAUDE_SHEET)
    reprice(books, OCTOBER, actor="ana", reason="contract signed late")
    after_first = _table_counts(books)

    again = reprice(books, OCTOBER, actor="ana")
    assert again.counts() == {"examined": 6, "changed": 0, "newly_priced": 0,
                              "newly_unpriced": 0}
    assert again.owners == {}
    entries, audits, rollups = _table_counts(books)
    assert (entries, rollups) == (after_first[0], after_first[2])
    assert audits == after_first[1] + 1  # every run is on record, even one that changes nothing

    c = cost_entries.c
    with books.connect() as conn:
        claude = conn.execute(
            sa.select(c.revision, c.status, c.currency, c.amount_pico, c.price_entry_id)
            .join_from(cost_entries, events, events.c.event_id == c.event_id)
            .where(events.c.model_requested == "claude-sonnet-4", events.c.day >= OCTOBER.start)
            .order_by(c.event_id, c.revision)).all()
        audit = conn.execute(sa.select(audit_log).where(audit_log.c.object_type == "reprice")
                             .order_by(audit_log.c.id)).mappings().all()
    entry_id = "contracted:cometapi:claude-sonnet-4@2026-01-01"
    assert [tuple(row) for row in claude] == 2 * [
        (1, "unpriced", None, None, None), (2, "priced", "USD", CLAUDE, entry_id)]
    assert [(a["action"], a["object_id"], a["actor"], a["reason"]) for a in audit] == [
        ("reprice", "2026-10", "ana", "contract signed late"), ("reprice", "2026-10", "ana", "")]
    assert json.loads(audit[0]["after"])["newly_priced"] == 2


def test_dry_run_writes_nothing_and_shows_the_same_diff(books, tmp_path):
    _add_prices(books, tmp_path, CLOSE_ON_OCT_1, FIXED_MINI)
    untouched = _table_counts(books)

    dry = reprice(books, OCTOBER, actor="ana", dry_run=True)
    assert _table_counts(books) == untouched
    real = reprice(books, OCTOBER, actor="ana")
    assert dry.counts() == real.counts()
    assert dry.owner_rows() == real.owner_rows()
    assert real.changed == 4


def test_reprice_command(cli_ledger, books, tmp_path):
    _add_prices(books, tmp_path, CLAUDE_SHEET)
    app = typer.Typer()
    app.command()(reprice_command)
    runner = CliRunner()

    dry = runner.invoke(app, ["--period", "2026-10", "--dry-run", "--format", "json"])
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.output) == [{
        "application": "contract-review", "currency": "USD", "changed": 2, "newly_priced": 2,
        "newly_unpriced": 0, "before": "0", "after": "0.021", "difference": "0.021"}]
    assert _rollup_totals(books)[""] == (4, 3, 3000, 0)

    table = runner.invoke(app, ["--period", "2026-10", "--reason", "late contract"],
                          env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    assert "6 events examined, 2 changed (2 newly priced, 0 newly unpriced)" in table.output
    assert "contract-review" in table.output and "0.021" in table.output
    assert _rollup_totals(books)[""] == (2, 1, 1000, 0)

    bad = runner.invoke(app, ["--period", "October"])
    assert bad.exit_code == 2 and "expected YYYY-MM" in bad.output
