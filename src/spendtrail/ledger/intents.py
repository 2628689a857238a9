"""The orphan rule: when an attempt's intent, whose completion never came, becomes an
``interrupted`` event (docs/gateway.md, "Intent records").

Ingest drops an intent as soon as its completion (the event with the same id) follows it in
the same file. An intent left over at the end of a file is held in ``pending_intents``,
because its completion may still come: in a later file of the same writer (the spool
rotates under calls in flight), or not yet written at all (the call is still in flight).
A held intent is resolved at the end of each ingest round:

- an event with its id is in the ledger -> it completed; the intent is dropped;
- else, once its writer has stopped (the writer named in the file's name no longer holds its
  lock in the spool, journal/spool.py; never judged by process id, which containers reuse)
  and none of that writer's files is left in the spool (every line it wrote has been
  ingested) -> it is ingested as an ``interrupted`` event: owner and model as the intent
  says, usage unknown, so unpriced. Only the spool's own ingester judges (see
  ``resolve_intents``);
- else it stays pending: a running gateway's calls in flight never look interrupted.

A completion can therefore never follow its ``interrupted`` event: a stopped writer writes
nothing more, and all it wrote was ingested first. Should one still come (a spool shared by
hosts, whose locks this host cannot see; files moved by hand), it is not dropped silently
but rejected with its file and line (``late_completions``). Ingest stays idempotent: an
intent read again is held again and dropped again, because its event is in the ledger.

Intents read from a JetStream journal (source ``nats:<stream>``) have no writer process to
watch; ``resolve_stream_intents`` applies their rule instead: held longer than the intent
horizon (more than any call lasts) at a moment when every message published before it was
committed (docs/journal.md).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from spendtrail.events.model import INTERRUPTED, UsageEvent, decode_event, encode_event
from spendtrail.journal.jetstream import SOURCE_PREFIX
from spendtrail.journal.reader import JournalLine
from spendtrail.journal.spool import Writer, in_spool, writer_files, writer_of, writer_running
from spendtrail.ledger.schema import events, pending_intents


def hold_intents(engine: sa.Engine, intents: Iterable[tuple[JournalLine, UsageEvent]]) -> None:
    """Keep intents a file left without completion; a later line of an id replaces it."""
    now = datetime.now(UTC)
    rows = [
        {
            "event_id": intent.event_id,
            "writer_pid": writer.pid if (writer := writer_of(Path(item.source).name)) else None,
            "source": item.source[:2000],
            "line": item.line,
            "intent": encode_event(intent).decode(),
            "held_at": now,
        }
        for item, intent in intents
    ]
    insert = sa.text(
        "INSERT INTO pending_intents (event_id, writer_pid, source, line, intent, held_at) "
        "VALUES (:event_id, :writer_pid, :source, :line, :intent, :held_at) "
        "ON CONFLICT (event_id) DO UPDATE SET writer_pid = excluded.writer_pid, "
        "source = excluded.source, line = excluded.line, intent = excluded.intent, "
        "held_at = excluded.held_at"
    )
    with engine.begin() as conn:
        conn.execute(insert, rows)


def resolve_intents(
    engine: sa.Engine,
    ingest: Callable[[list[UsageEvent]], object],
    *,
    spool: Path | None = None,
    files: Collection[str] = (),
) -> tuple[int, int]:
    """Apply the orphan rule to the held intents this ingester can judge; returns (made
    interrupted, still pending among those).

    The ledger holds the intents of every spool that ingests into it, and every replica's
    spool has the same path inside its container, so a path says nothing: an intent is
    `spool`'s when its file (named after its writer's random id) is in that spool, waiting
    or ingested. Its writer is judged there: its lock, and its files not yet ingested. The
    intents of other spools are left to their own ingesters, which can see their writers.
    `files`: files named to ingest, taken as all their writers wrote."""
    p = pending_intents.c
    held = _still_held(engine, ~p.source.startswith(SOURCE_PREFIX, autoescape=True))
    stopped: dict[tuple[Path, Writer], bool] = {}
    ours, orphans = 0, []
    for row in held:
        source = Path(row.source)
        writer = writer_of(source.name)
        if row.source in files:
            folder, files_left = source.parent, False
        elif spool is not None and in_spool(spool, source.name):
            folder, files_left = spool, True
        else:
            continue
        ours += 1
        if writer is None:  # no writer to wait for
            orphans.append(decode_event(row.intent))
            continue
        if (folder, writer) not in stopped:
            stopped[folder, writer] = not (
                writer_running(folder, writer)
                or (files_left and writer_files(folder, writer)))
        if stopped[folder, writer]:
            orphans.append(decode_event(row.intent))
    _interrupt(engine, orphans, ingest)
    return len(orphans), ours - len(orphans)


def resolve_stream_intents(
    engine: sa.Engine,
    source: str,
    committed_before: datetime,
    horizon: float,
    ingest: Callable[[list[UsageEvent]], object],
) -> tuple[int, int]:
    """The orphan rule for intents read from the stream `source`: every message published
    before `committed_before` is in the ledger, so an intent held more than `horizon` seconds
    before that moment, still without its event, belongs to a call that ended without one
    (a call lasts less than `horizon`). Returns (made interrupted, still pending)."""
    p = pending_intents.c
    held = _still_held(engine, p.source == source)
    cutoff = committed_before - timedelta(seconds=horizon)
    orphans = [decode_event(row.intent) for row in held if _aware(row.held_at) < cutoff]
    _interrupt(engine, orphans, ingest)
    return len(orphans), len(held) - len(orphans)


def _still_held(engine: sa.Engine, which: sa.ColumnElement[bool]) -> list:
    """Drop the held intents whose event has come, return the rest of those `which` selects."""
    p = pending_intents.c
    completed = sa.exists().where(events.c.event_id == p.event_id)
    with engine.begin() as conn:
        conn.execute(sa.delete(pending_intents).where(completed))
        return conn.execute(
            sa.select(p.event_id, p.source, p.intent, p.held_at).where(which)).all()


def _interrupt(
    engine: sa.Engine, orphans: list[UsageEvent], ingest: Callable[[list[UsageEvent]], object]
) -> None:
    if not orphans:
        return
    ingest(orphans)  # idempotent: a crash before the delete below only repeats this
    ids = [event.event_id for event in orphans]
    p = pending_intents.c
    with engine.begin() as conn:
        for start in range(0, len(ids), 900):
            conn.execute(sa.delete(pending_intents).where(p.event_id.in_(ids[start : start + 900])))


def _aware(value: datetime) -> datetime:
    """SQLite hands timestamps back naive (UTC)."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def late_completions(
    engine: sa.Engine, duplicates: dict[str, JournalLine]
) -> list[tuple[JournalLine, str]]:
    """Of completions not inserted because their id is in the ledger, those whose id is an
    ``interrupted`` event, each with the message of its reject."""
    e = events.c
    ids = list(duplicates)
    late = []
    with engine.connect() as conn:
        for start in range(0, len(ids), 900):
            late += conn.execute(
                sa.select(e.event_id).where(
                    e.event_id.in_(ids[start : start + 900]), e.outcome == INTERRUPTED
                )
            ).scalars()
    return [
        (
            duplicates[event_id],
            f"event {event_id} completes a call the ledger already holds as interrupted; "
            "not ingested (was its writer on another host sharing this spool?)",
        )
        for event_id in late
    ]
