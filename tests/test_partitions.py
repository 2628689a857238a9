"""Monthly partitions and retention on PostgreSQL (docs/ledger.md): the months ingest sees get
partitions, a default partition keeps what has none, an unpartitioned ledger is copied in by
migration 0016 with nothing lost, and retention drops closed months past the window while
their statements stay byte for byte; SQLite stays unpartitioned and retention refuses it.

Retention leaves partitions that refuse every row, so those tests get a database of their own.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa
from factories import ROOT, seed_books, write_jsonl
from test_allocation_helpers import BOOKS, NOVEMBER, usage_event
from test_migrations import _fresh_postgres_database, ledger_at
from typer.testing import CliRunner

from spendtrail.allocation.rule_store import save_rules_version
from spendtrail.allocation.rules import load_rules
from spendtrail.cli.ledger_cmd import app
from spendtrail.close import BLOCKERS, close_period, reopen_period
from spendtrail.ledger.db import make_engine, migrate
from spendtrail.ledger.ingest import Ingester
from spendtrail.ledger.partitions import create_months, list_partitions, maintain
from spendtrail.ledger.reprice import reprice
from spendtrail.ledger.retention import RetentionError, check_rollups, retire
from spendtrail.ledger.schema import cost_entries, events, ingest_rejects, rollups_daily
from spendtrail.periods import parse_period
from spendtrail.reports.chargeback import build_statement, to_csv, to_json
from spendtrail.reports.focus import focus_rows
from spendtrail.reports.retries import retry_inflation
from spendtrail.reports.statement_view import to_markdown

OCTOBER, OCT = parse_period("2026-10"), date(2026, 10, 1)
TODAY = date(2027, 12, 15)  # keep 13m: November 2026 is the oldest month kept


@pytest.fixture
def own_books(postgres_url, tmp_path):
    """A PostgreSQL ledger of its own with the example registry, prices, shared-cost rules
    and BOOKS (October and November 2026) ingested."""
    url, drop = _fresh_postgres_database(postgres_url)
    engine = make_engine(url)
    migrate(engine)
    with engine.begin() as conn:
        seed_books(conn, tmp_path)
        save_rules_version(
            conn,
            load_rules(ROOT / "examples" / "shared-cost-rules.yaml"),
            source_path="shared-cost-rules.yaml",
            actor="test",
        )
    Ingester(engine).ingest_events([usage_event(*item) for item in BOOKS])
    close_period(engine, OCTOBER, actor="test", accept=dict.fromkeys(BLOCKERS, "test books"))
    yield engine
    engine.dispose()
    drop()


def where_rows_are(engine, table: str) -> dict[str, int]:
    with engine.connect() as conn:
        return dict(
            conn.execute(
                sa.text(f"SELECT tableoid::regclass::text, count(*) FROM {table} GROUP BY 1")
            ).all()
        )


def rendered(engine, period=OCTOBER) -> tuple[str, str, str]:
    with engine.connect() as conn:
        statement = build_statement(conn, period, generated_at=datetime(2028, 1, 2, tzinfo=UTC))
    return to_json(statement), to_csv(statement), to_markdown(statement)


def test_each_month_seen_gets_its_partitions(own_books):
    assert where_rows_are(own_books, "events") == {"events_2026_10": 11, "events_2026_11": 1}
    assert where_rows_are(own_books, "cost_entries") == {
        "cost_entries_2026_10": 11,
        "cost_entries_2026_11": 1,
    }


def test_every_partition_has_the_drills_owner_indexes(own_books):
    """Migration 0018's (owner, started_at) indexes, on each month's partition, a month made
    later included, and the default one."""
    with own_books.begin() as conn:
        create_months(conn, [date(2027, 5, 1)])
        found = conn.execute(
            sa.text(
                "SELECT tablename, indexdef FROM pg_indexes WHERE tablename LIKE 'events_%' "
                "AND indexdef LIKE '%(% started_at)%'"
            )
        ).all()
    by_table: dict[str, set[str]] = {}
    for table, definition in found:
        by_table.setdefault(table, set()).add(definition.split("(")[1].split(",")[0])
    owners = {"application", "business_unit", "cost_center", "budget_owner"}
    for table in ("events_2026_10", "events_2026_11", "events_2027_05", "events_default"):
        assert by_table.get(table) == owners, (table, by_table)


def test_the_default_partition_keeps_a_month_without_one_until_it_gets_one(own_books):
    with own_books.begin() as conn:  # a writer that does not create partitions
        conn.execute(
            sa.text("CREATE TEMP TABLE copied AS SELECT * FROM events WHERE day = :day"),
            {"day": NOVEMBER},
        )
        conn.execute(sa.text("UPDATE copied SET day = '2027-03-04', event_id = 'moved'"))
        conn.execute(sa.text("INSERT INTO events SELECT * FROM copied"))
    assert where_rows_are(own_books, "events")["events_default"] == 1
    with own_books.begin() as conn:
        assert create_months(conn, [date(2027, 3, 9), date(2026, 10, 1)]) == [date(2027, 3, 1)]
    counts = where_rows_are(own_books, "events")
    assert counts["events_2027_03"] == 1 and "events_default" not in counts


def test_the_maintenance_command_creates_months_ahead(own_books):
    created, found = maintain(own_books, date(2026, 12, 31), 3)
    assert created == [date(2026, 12, 1), date(2027, 1, 1), date(2027, 2, 1), date(2027, 3, 1)]
    names = [p.name for p in found]
    assert names[-2:] == ["cost_entries_default", "events_default"]
    assert "events_2027_03" in names and "cost_entries_2027_03" in names
    assert maintain(own_books, date(2026, 12, 31), 3)[0] == []


def test_the_statement_of_a_retired_month_is_byte_identical(own_books):
    before, november = rendered(own_books), rendered(own_books, parse_period("2026-11"))
    assert '"search-summaries"' in before[0]
    with own_books.connect() as conn:
        expected = check_rollups(conn, OCT)

    done = retire(own_books, 13, today=TODAY, actor="ana")

    assert [(t.month, t.events, t.amount_pico) for t in done] == [(OCT, 11, expected.amount_pico)]
    assert expected.events == 11 and expected.amount_pico["USD"] > 0
    assert where_rows_are(own_books, "events") == {"events_2026_11": 1}
    assert where_rows_are(own_books, "cost_entries") == {"cost_entries_2026_11": 1}
    assert rendered(own_books) == before
    assert rendered(own_books, parse_period("2026-11")) == november
    with own_books.connect() as conn:
        audit = conn.execute(
            sa.text("SELECT actor, object_id FROM audit_log WHERE action = 'retire'")
        ).all()
        retired = {p.name: p.retired for p in list_partitions(conn)}
    assert audit == [("ana", "2026-10")]
    assert retired["events_2026_10"] and not retired["events_2026_11"]
    assert retire(own_books, 13, today=TODAY, actor="ana") == []  # nothing left to drop


def test_retention_refuses_a_month_inside_the_window(own_books):
    with pytest.raises(
        RetentionError, match="2026-11 is inside the keep window .months from 2026-11 are kept."
    ):
        retire(own_books, 13, today=TODAY, actor="ana", month=NOVEMBER)
    with pytest.raises(RetentionError, match="2026-10 is inside the keep window"):
        retire(own_books, 14, today=TODAY, actor="ana", month=OCT)
    assert retire(own_books, 14, today=TODAY, actor="ana") == []
    assert where_rows_are(own_books, "events") == {"events_2026_10": 11, "events_2026_11": 1}


def test_retention_drops_only_closed_months(own_books):
    reopen_period(own_books, OCTOBER, actor="ana", reason="a late credit note")
    with pytest.raises(RetentionError, match="2026-10 is not closed"):
        retire(own_books, 13, today=TODAY, actor="ana", month=OCT)
    assert retire(own_books, 13, today=TODAY, actor="ana") == []
    assert where_rows_are(own_books, "events") == {"events_2026_10": 11, "events_2026_11": 1}


def test_a_dry_run_checks_and_drops_nothing(own_books):
    [totals] = retire(own_books, 13, today=TODAY, actor="ana", dry_run=True)
    assert totals.events == 11
    assert where_rows_are(own_books, "events") == {"events_2026_10": 11, "events_2026_11": 1}


def test_rollups_that_disagree_with_the_raw_rows_stop_retention(own_books):
    with own_books.begin() as conn:
        conn.execute(
            rollups_daily.update()
            .where(rollups_daily.c.day == date(2026, 10, 20), rollups_daily.c.currency == "USD")
            .values(amount_pico=rollups_daily.c.amount_pico + 1)
        )
    with pytest.raises(
        RetentionError,
        match="2026-10: the daily rollups do not match the raw "
        "rows .cost per day and currency, at .*2026, 10, "
        "20.*nothing was dropped",
    ):
        retire(own_books, 13, today=TODAY, actor="ana")
    assert where_rows_are(own_books, "events")["events_2026_10"] == 11


def test_an_event_of_a_retired_month_is_rejected_not_counted_again(own_books, tmp_path):
    stale = Ingester(own_books)  # started before retention ran: its view of months is old
    with own_books.connect() as conn:
        rolled = conn.execute(sa.select(sa.func.sum(rollups_daily.c.events))).scalar_one()
    retire(own_books, 13, today=TODAY, actor="ana")
    replay = write_jsonl(
        tmp_path / "old.jsonl",
        [usage_event(OCT, "search-summaries"), usage_event(NOVEMBER, "search-summaries")],
    )
    for ingester in (stale, Ingester(own_books)):
        report = ingester.ingest_paths([replay])
        assert [r.line for r in report.rejected] == [1]
        assert "is of 2026-10, a month retention retired" in report.rejected[0].error
    with own_books.connect() as conn:
        assert conn.execute(sa.select(sa.func.sum(rollups_daily.c.events))).scalar_one() == (
            rolled + 1
        )  # the November event, once
        assert (
            conn.execute(sa.select(sa.func.count()).select_from(ingest_rejects)).scalar_one() == 1
        )
    assert where_rows_are(own_books, "events") == {"events_2026_11": 2}


def test_migration_copies_an_unpartitioned_ledger(tmp_path, request):
    """A ledger at 0013 with events of two months, a repriced event and an orphan cost entry:
    after 0016 every row is there, in its month's partition on PostgreSQL, each cost entry
    with its event's day; ids go on from where they were and a replay is still a duplicate."""
    source = make_engine(f"sqlite:///{tmp_path / 'source.db'}")
    migrate(source)
    with source.begin() as conn:
        seed_books(conn, tmp_path)
    sample = [usage_event(*item) for item in BOOKS]
    Ingester(source).ingest_events(sample)
    with source.connect() as conn:
        old_events = [dict(r) for r in conn.execute(sa.select(events)).mappings()]
        old_costs = [
            {k: v for k, v in r.items() if k != "day"}
            for r in conn.execute(sa.select(cost_entries)).mappings()
        ]
    source.dispose()
    first = old_costs[0]
    old_costs += [
        {**first, "id": 100, "revision": 2, "amount_pico": 1},  # a repricing
        {
            **first,
            "id": 101,
            "event_id": "gone",
            "priced_at": datetime(2026, 9, 30, 23, tzinfo=UTC),
        },
    ]  # its event is missing
    day_of = {e["event_id"]: e["day"] for e in old_events} | {"gone": date(2026, 9, 30)}

    for backend in ("sqlite", "postgresql"):
        with ledger_at("0013_bill_fetch_cursors", backend, tmp_path, request) as engine:
            with engine.begin() as conn:
                conn.execute(events.insert(), old_events)
                conn.execute(
                    sa.table("cost_entries", *(sa.column(k) for k in old_costs[0])).insert(),
                    old_costs,
                )
                if backend == "postgresql":  # as if the sequence had numbered them
                    conn.execute(sa.text("SELECT setval('cost_entries_id_seq', 101)"))
            migrate(engine)
            with engine.connect() as conn:
                costs = {r.id: r for r in conn.execute(sa.select(cost_entries))}
                assert conn.execute(
                    sa.select(sa.func.count()).select_from(events)
                ).scalar_one() == len(old_events)
            assert {i: (r.event_id, r.revision, r.day) for i, r in costs.items()} == {
                c["id"]: (c["event_id"], c["revision"], day_of[c["event_id"]]) for c in old_costs
            }
            if backend == "postgresql":
                assert where_rows_are(engine, "events") == {
                    "events_2026_10": 11,
                    "events_2026_11": 1,
                }
                assert where_rows_are(engine, "cost_entries") == {
                    "cost_entries_2026_09": 1,
                    "cost_entries_2026_10": 12,
                    "cost_entries_2026_11": 1,
                }
            with engine.begin() as conn:
                seed_books(conn, tmp_path)
            report = Ingester(engine).ingest_events(
                [*sample[:2], usage_event(date(2026, 12, 1), "search-summaries")]
            )
            assert (report.inserted, report.duplicates) == (1, 2)
            with engine.connect() as conn:
                new_id = conn.execute(sa.select(sa.func.max(cost_entries.c.id))).scalar_one()
            assert new_id > 101


def test_the_commands(cli_ledger, ledger_url):
    runner = CliRunner()
    partitions = runner.invoke(app, ["partitions", "--ahead", "1", "--format", "json"])
    retention = runner.invoke(app, ["retention", "--keep", "13m", "--format", "json"])
    if ledger_url.startswith("sqlite"):
        assert "this SQLite ledger is not partitioned" in str(partitions.exception)
        assert (
            "only a PostgreSQL ledger has; this SQLite ledger is not partitioned and keeps "
            "every event" in str(retention.exception)
        )
        return
    assert partitions.exit_code == 0, partitions.output
    this_month = f"{datetime.now(UTC):%Y_%m}"
    assert f'"partition": "events_{this_month}"' in partitions.output
    assert retention.exit_code == 0, retention.output
    assert retention.output.strip() == "[]"
    bad = runner.invoke(app, ["retention", "--keep", "13 months"])
    assert "expected a number of months, e.g. 13m" in str(bad.exception)


def test_per_event_views_refuse_a_retired_month_rather_than_answer_without_it(own_books):
    retire(own_books, 13, today=TODAY, actor="ana")
    span = parse_period("2026-10-20..2026-11-30")
    with own_books.connect() as conn:
        for view in (focus_rows, retry_inflation):
            with pytest.raises(RetentionError, match="dropped those of 2026-10; statements"):
                view(conn, span)
            view(conn, parse_period("2026-11"))
    with pytest.raises(RetentionError, match="^repricing reads the events of 2026-10"):
        reprice(own_books, OCTOBER, actor="ana")
    assert reprice(own_books, parse_period("2026-11"), actor="ana").examined == 1


def test_creators_running_at_once_make_each_month_once(own_books):
    months = [date(2027, month, 1) for month in range(1, 7)]

    def create(_):
        with own_books.begin() as conn:
            return create_months(conn, reversed(months))

    with ThreadPoolExecutor(4) as pool:
        created = [month for made in pool.map(create, range(4)) for month in made]
    assert sorted(created) == months
