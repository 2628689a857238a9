"""A large month's FOCUS pass read by worker processes (``reports.focus_sums``): the same
sums, counts and rows as one process, on both backends, also inside a close's transaction
(which has written before the workers read)."""

from __future__ import annotations

from test_allocation_helpers import BOOKS
from test_reprice import CLOSE_ON_OCT_1, FIXED_MINI, _add_prices

from spendtrail.allocation.exceptions import assign, group_id
from spendtrail.close import BLOCKERS, close_period
from spendtrail.ledger.costs import has_revisions
from spendtrail.ledger.prices import load_catalog
from spendtrail.ledger.reprice import reprice
from spendtrail.periods import parse_period
from spendtrail.reports import focus_sums
from spendtrail.reports.focus import FocusOptions, closed_rows, focus_rows
from spendtrail.reports.focus_sums import day_ranges, event_sums

pytest_plugins = ("test_allocation_helpers",)  # books: two October days, every owner status

OCTOBER = parse_period("2026-10")
IN_OCTOBER = sum(1 for day, _, _ in BOOKS if day.month == 10)


def reassign_ghost(engine) -> None:
    with engine.begin() as conn:
        assign(conn, application="contract-review", actor="ana", reason="theirs",
               group=group_id("unknown_application", "ghost-app"))


def test_the_month_is_cut_into_whole_days_with_events_on_each_side(books):
    with books.connect() as conn:
        ranges = day_ranges(conn, OCTOBER, workers=2, parallel_from=0)
        small = day_ranges(conn, OCTOBER, workers=2, parallel_from=IN_OCTOBER + 1)
        alone = day_ranges(conn, OCTOBER, workers=1, parallel_from=0)
    assert [(r.start, r.end) for r in small] == [(OCTOBER.start, OCTOBER.end)]
    assert [(r.start, r.end) for r in alone] == [(OCTOBER.start, OCTOBER.end)]
    assert len(ranges) == 2
    assert ranges[0].start == OCTOBER.start and ranges[-1].end == OCTOBER.end
    assert ranges[0].end == ranges[1].start
    days = sorted({day for day, _, _ in BOOKS if day.month == 10})
    assert ranges[0].start <= days[0] < ranges[0].end <= days[-1] < ranges[1].end


def test_workers_sum_what_one_process_sums(books):
    reassign_ghost(books)
    with books.connect() as conn:
        catalog = load_catalog(conn)
        alone = event_sums(conn, OCTOBER, catalog, workers=1)
        split = event_sums(conn, OCTOBER, catalog, workers=2, parallel_from=0)
    sums, counts = alone
    assert counts.events == IN_OCTOBER and counts.unpriced_events == 1
    assert {key.allocation_status for key in sums} == {
        "allocated", "shared", "quarantined", "reassigned"}
    assert len({key.day for key in sums}) == 2
    assert split == alone


def test_workers_take_the_current_revision_of_a_repriced_month(books, tmp_path):
    with books.connect() as conn:
        assert not has_revisions(conn, OCTOBER)  # the workers join each event's only entry
    _add_prices(books, tmp_path, CLOSE_ON_OCT_1, FIXED_MINI)  # gpt-4o-mini from October 1
    assert reprice(books, OCTOBER, actor="ana", reason="contract rate").changed
    with books.connect() as conn:
        assert has_revisions(conn, OCTOBER)  # now they search for the newest
        catalog = load_catalog(conn)
        alone = event_sums(conn, OCTOBER, catalog, workers=1)
        split = event_sums(conn, OCTOBER, catalog, workers=2, parallel_from=0)
    assert alone[1].events == IN_OCTOBER  # each event once, at its new price
    assert any(key.entry_id.startswith("contracted:") and "2026-10-01" in key.entry_id
               for key in alone[0])
    assert split == alone


def test_a_close_taken_by_workers_holds_the_rows_one_process_reads(books, monkeypatch):
    reassign_ghost(books)
    monkeypatch.setattr(focus_sums, "PARALLEL_FROM", 0)  # this small month, by workers
    close_period(books, OCTOBER, actor="ana",
                 accept={code: "test month" for code in BLOCKERS})
    monkeypatch.setattr(focus_sums, "PARALLEL_FROM", 10**9)
    for version in ("1.2", "1.3"):
        options = FocusOptions(version=version)
        with books.connect() as conn:
            taken, taken_summary = closed_rows(conn, OCTOBER, options)
            read, read_summary = focus_rows(conn, OCTOBER, options)
        assert taken == read
        assert taken_summary.events == read_summary.events == IN_OCTOBER
        assert taken_summary.cost_pico == read_summary.cost_pico
