"""Ingest on SQLite and PostgreSQL: validation, pricing, rollups, idempotency, bad lines."""

from __future__ import annotations

import gc
import threading
from decimal import Decimal

import sqlalchemy as sa
from factories import event, write_jsonl

from spendtrail.events import encode_event
from spendtrail.journal.spool import Spool
from spendtrail.ledger.ingest import Ingester
from spendtrail.ledger.schema import cost_entries, events, ingest_rejects, rollups_daily
from spendtrail.money import from_pico
from spendtrail.periods import parse_period
from spendtrail.reports.costs import cost_report


def totals(engine) -> tuple:
    """Rollup sums, after checking they agree with the event and cost rows they summarize."""
    with engine.connect() as conn:
        orphans = conn.execute(
            sa.select(sa.func.count()).select_from(cost_entries).where(
                ~cost_entries.c.event_id.in_(sa.select(events.c.event_id)))).scalar()
        assert orphans == 0
        event_count = conn.execute(sa.select(sa.func.count()).select_from(events)).scalar()
        priced = conn.execute(sa.select(sa.func.sum(cost_entries.c.amount_pico))).scalar() or 0
        r = rollups_daily.c
        sums = conn.execute(sa.select(
            sa.func.sum(r.events), sa.func.sum(r.amount_pico), sa.func.sum(r.input_tokens),
            sa.func.sum(r.unpriced_events))).one()
    assert (sums[0] or 0, sums[1] or 0) == (event_count, priced)
    return sums


def test_prices_allocates_and_rolls_up(seeded):
    made = [
        event(input_tokens=1000, cached_input_tokens=200, output_tokens=500),
        event(app="unregistered-app"),
        event(model="gpt-5-unpriced"),
        event(app="platform-shared", env="staging"),
    ]
    report = Ingester(seeded).ingest_events(made)
    assert (report.inserted, report.allocated, report.quarantined, report.shared) == (4, 2, 1, 1)
    assert report.unpriced == 1
    with seeded.connect() as conn:
        rows = conn.execute(
            sa.select(events.c.event_id, events.c.allocation_status,
                      events.c.allocation_reasons, events.c.cost_center,
                      cost_entries.c.status, cost_entries.c.amount_pico)
            .join(cost_entries, cost_entries.c.event_id == events.c.event_id)).all()
    by_id = {row.event_id: row for row in rows}
    rows = [by_id[e.event_id] for e in made]
    first = rows[0]
    # 800 uncached x 0.15/M + 200 cached x 0.075/M + 500 out x 0.60/M, exactly
    assert from_pico(first.amount_pico) == Decimal("0.000435")
    assert first.cost_center == "CC-100" and first.allocation_status == "allocated"
    assert rows[1].allocation_reasons == "unknown_application"
    assert rows[2].status == "unpriced" and rows[2].amount_pico is None
    assert rows[3].allocation_status == "shared"
    events_total, amount, tokens, unpriced = totals(seeded)
    assert events_total == 4 and unpriced == 1 and tokens == 4000
    assert amount == sum(r.amount_pico or 0 for r in rows)


def test_replaying_a_file_changes_nothing(seeded, tmp_path):
    path = write_jsonl(tmp_path / "events.jsonl", [event() for _ in range(30)])
    first = Ingester(seeded, batch_size=7).ingest_paths([path])
    before = totals(seeded)
    second = Ingester(seeded, batch_size=7).ingest_paths([path])
    assert (first.inserted, second.inserted, second.duplicates) == (30, 0, 30)
    assert totals(seeded) == before


def test_duplicate_ids_inside_one_batch_count_once(seeded):
    one = event()
    report = Ingester(seeded).ingest_events([one, one, event()])
    assert (report.inserted, report.duplicates) == (2, 1)
    assert totals(seeded)[0] == 2


def test_ingest_gives_the_collector_its_thresholds_back(seeded, tmp_path):
    """Ingest collects young objects less often while it runs; the process it runs in (a
    gateway, the CLI) gets its own setting back."""
    before = gc.get_threshold()
    path = tmp_path / "events.jsonl"
    path.write_bytes(encode_event(event()) + b"\n")
    seen = []
    Ingester(seeded).ingest_paths([path], on_progress=lambda _: seen.append(gc.get_threshold()))
    assert seen and seen[0][0] >= 100_000
    assert gc.get_threshold() == before


def test_bad_lines_are_rejected_with_file_and_line_and_the_rest_ingest(seeded, tmp_path):
    good = [event() for _ in range(3)]
    path = tmp_path / "events.jsonl"
    path.write_bytes(
        encode_event(good[0]) + b"\n"
        + b'{"event_id": "x", "request_id": "r", "provider": "p"}\n'  # no started_at
        + b"not json at all\n"
        + encode_event(good[1]) + b"\n"
        + encode_event(good[2]) + b"\n"
        + encode_event(event())[:40]  # a torn last write: no newline, cut mid-object
    )
    report = Ingester(seeded).ingest_paths([path])
    assert report.inserted == 3
    assert [(r.line, r.error.split(" ")[0]) for r in report.rejected] == [
        (2, "Object"), (3, "malformed"), (6, "truncated")]
    assert all(r.source == str(path) for r in report.rejected)
    assert "started_at" in report.rejected[0].error
    Ingester(seeded).ingest_paths([path])  # the replay reports them again but stores once
    with seeded.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(ingest_rejects)).scalar() == 3


def test_spool_files_are_ingested_once_sealed(seeded, tmp_path):
    spool_dir = tmp_path / "spool"
    spool = Spool(spool_dir, max_bytes=2000)
    for _ in range(20):
        spool.append(event())
    open_files = list(spool_dir.glob("*.open"))
    assert len(open_files) == 1  # still being written: not ingested yet
    report = Ingester(seeded).ingest_spool(spool_dir)
    spool.close()
    report2 = Ingester(seeded).ingest_spool(spool_dir)
    assert report.inserted + report2.inserted == 20
    assert not list(spool_dir.glob("*.jsonl*"))
    assert len(list((spool_dir / "ingested").glob("*.jsonl"))) >= 2


def test_events_before_any_registry_are_quarantined_not_dropped(ledger):
    report = Ingester(ledger).ingest_events([event()])
    assert (report.inserted, report.quarantined, report.unpriced) == (1, 1, 1)
    with ledger.connect() as conn:
        assert conn.execute(sa.select(events.c.allocation_reasons)).scalar() == "no_registry"


def test_concurrent_ingesters_never_double_count(seeded, tmp_path):
    path = write_jsonl(tmp_path / "events.jsonl", [event() for _ in range(400)])
    reports = []

    def run():
        reports.append(Ingester(seeded, batch_size=50).ingest_paths([path]))

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.inserted for r in reports) == 400
    assert totals(seeded)[0] == 400


def test_cost_report_groups_rollups_and_counts_quarantine(seeded):
    Ingester(seeded).ingest_events(
        [event(), event(), event(app="contract-review", model="gpt-4o"), event(app="nobody")])
    with seeded.connect() as conn:
        report = cost_report(conn, parse_period("2026-10"), ("application",))
        empty = cost_report(conn, parse_period("2026-09"), ("application",))
    by_app = {row.key["application"]: row for row in report.rows}
    assert by_app["search-summaries"].events == 2
    assert by_app["contract-review"].cost() == {"USD": Decimal("0.0075")}
    # Quarantined: grouped as such, never under the application it claimed.
    assert report.quarantined.events == 1 and by_app["quarantined"].events == 1
    assert "nobody" not in by_app
    assert report.totals.events == 4
    assert empty.totals.events == 0


def test_file_chunks_keep_true_line_numbers(tmp_path):
    from spendtrail.journal.reader import file_chunks, read_lines

    path = tmp_path / "lines.jsonl"
    path.write_bytes(b"".join(b'{"n": %d}\n' % i for i in range(1, 1001)) + b"\n" + b'{"n": 1002}')
    chunks = file_chunks(path, 700)
    assert len(chunks) > 5
    assert chunks[0].start == 0 and chunks[-1].end == path.stat().st_size
    assert all(a.end == b.start for a, b in zip(chunks, chunks[1:], strict=False))
    lines = [line for chunk in chunks for line in read_lines(path, chunk)]
    assert [line.line for line in lines] == [*range(1, 1001), 1002]
    assert all(line.data == b'{"n": %d}' % line.line for line in lines)
    assert [line.complete for line in lines[-2:]] == [True, False]


def test_parallel_workers_ingest_exactly_what_one_pass_does(seeded, tmp_path, monkeypatch):
    from spendtrail.ledger import ingest

    monkeypatch.setattr(ingest, "CHUNK_BYTES", 4096)
    made = [event() for _ in range(300)]
    path = write_jsonl(tmp_path / "events.jsonl", made + made[:50], tail=b"{oops}\n")
    report = Ingester(seeded, batch_size=40, workers=2).ingest_paths([path])
    assert (report.read, report.inserted, report.duplicates) == (351, 300, 50)
    assert [(r.line, r.source) for r in report.rejected] == [(351, str(path))]
    assert totals(seeded)[0] == 300


def test_prices_used_per_day_are_kept_for_statements(seeded):
    from spendtrail.ledger.schema import prices_used_daily

    Ingester(seeded).ingest_events(
        [event(), event(), event(model="gpt-4o"), event(model="gpt-5-unpriced")])
    with seeded.connect() as conn:
        rows = conn.execute(sa.select(prices_used_daily.c.model,
                                      prices_used_daily.c.price_entry_id)).all()
    # One row per model and entry, however many events; unpriced usage has no entry to name.
    assert sorted(rows) == [("gpt-4o", "contracted:cometapi:gpt-4o@2026-01-01"),
                            ("gpt-4o-mini", "contracted:cometapi:gpt-4o-mini@2026-01-01")]
