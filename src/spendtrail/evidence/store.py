"""Evidence in the ledger: the source register and stored, checked review notes.

Every change is audited in the same transaction as the change. Nothing holding a credential
is stored: text is scanned before it is written and refused, naming what to remove.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime

import sqlalchemy as sa

from spendtrail.evidence.checklist import REASON_CODES, CheckResult, Reason, check_note, mark
from spendtrail.evidence.errors import EvidenceError
from spendtrail.evidence.followups import open_follow_up
from spendtrail.evidence.linter import cited_ids
from spendtrail.evidence.notes import ReviewNote, parse_timestamp
from spendtrail.evidence.sources import Source
from spendtrail.ledger.audit import record_change
from spendtrail.ledger.db import as_utc
from spendtrail.ledger.schema import evidence_sources, price_entries, review_notes
from spendtrail.redact import find_secrets


def refuse_secrets(what: str, *texts: str) -> None:
    """Raise before storing text that holds a credential; the placeholder is fine."""
    if any(match.secret for text in texts for match in find_secrets(text)):
        raise EvidenceError(f"{what}: holds a credential; remove it (and rotate it) before "
                            "storing; write <API_KEY_PLACEHOLDER> in examples")


# -- the source register -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RegisteredSource:
    source: Source
    area: str
    checked_by: str
    updated_at: datetime

    def record(self) -> dict[str, object]:
        """What listings and the audit log show of it."""
        s = self.source
        return {
            "id": s.id, "url": s.url, "purpose": s.purpose, "area": self.area,
            "covers": None if s.covers is None else sorted(s.covers),
            "accessed": s.accessed.isoformat(), "checked_by": self.checked_by,
            "review_every_days": s.review_every_days,
        }


def save_source(
    conn: sa.Connection, source: Source, *, area: str, checked_by: str, actor: str,
    reason: str = "",
) -> RegisteredSource:
    """Add a source, or record a re-check of one (a new accessed date, purpose, ...)."""
    refuse_secrets(f"source {source.id}", source.url, source.purpose, area)
    before = _source_by_id(conn, source.id)
    item = RegisteredSource(source, area, checked_by, datetime.now(UTC))
    values = {
        "url": source.url, "purpose": source.purpose, "area": area,
        "covers": None if source.covers is None else ",".join(sorted(source.covers)),
        "accessed": source.accessed, "checked_by": checked_by,
        "review_every_days": source.review_every_days, "updated_at": item.updated_at,
    }
    table = evidence_sources
    if before is None:
        conn.execute(table.insert().values(id=source.id, **values))
    else:
        conn.execute(table.update().where(table.c.id == source.id).values(**values))
    record_change(conn, actor=actor, action="source.add" if before is None else "source.update",
                  object_type="source", object_id=source.id,
                  before=None if before is None else before.record(), after=item.record(),
                  reason=reason)
    return item


def load_sources(conn: sa.Connection) -> list[RegisteredSource]:
    rows = conn.execute(sa.select(evidence_sources).order_by(evidence_sources.c.id))
    return [_source_from_row(row) for row in rows.mappings()]


def known_sources(conn: sa.Connection) -> dict[str, Source]:
    return {item.source.id: item.source for item in load_sources(conn)}


@dataclass(frozen=True, slots=True)
class SourceProblem:
    kind: str  # stale | missing
    source_id: str
    cited_by: str  # "register", "review chargeback-review-...", "price entry ..."
    message: str


def check_sources(conn: sa.Connection, as_of: date) -> list[SourceProblem]:
    """Sources past their review cadence, and every citation of a source not in the register
    (by review notes, in their source list, claims or text, and by price entries)."""
    known = known_sources(conn)
    problems = [
        SourceProblem("stale", s.id, "register", f"last read {s.accessed.isoformat()}, past its "
                      f"{s.review_every_days}-day review cadence; re-check it")
        for s in known.values() if s.due(s.accessed, as_of)
    ]
    citations: list[tuple[str, str]] = []
    for stored in list_reviews(conn):
        note = stored.note
        ids = [ref.source_id for ref in note.source_url_checked if ref.source_id]
        ids += [i for claim in note.claims for i in claim.source_ids] + cited_ids(note.notes)
        citations += [(i, f"review {note.review_id}") for i in dict.fromkeys(ids)]
    rows = conn.execute(sa.select(price_entries.c.id, price_entries.c.source_id)
                        .where(price_entries.c.source_id.is_not(None))
                        .order_by(price_entries.c.id))
    citations += [(source_id, f"price entry {entry_id}") for entry_id, source_id in rows]
    problems += [
        SourceProblem("missing", source_id, cited_by,
                      f"cites {source_id}, which is not in the source register")
        for source_id, cited_by in citations if source_id not in known
    ]
    return problems


def _source_by_id(conn: sa.Connection, source_id: str) -> RegisteredSource | None:
    row = conn.execute(
        sa.select(evidence_sources).where(evidence_sources.c.id == source_id)
    ).mappings().first()
    return None if row is None else _source_from_row(row)


def _source_from_row(row: sa.RowMapping) -> RegisteredSource:
    covers = row["covers"]
    source = Source(
        row["id"], row["url"], row["accessed"], row["purpose"],
        None if covers is None else frozenset(c for c in covers.split(",") if c),
        row["review_every_days"],
    )
    return RegisteredSource(source, row["area"], row["checked_by"], as_utc(row["updated_at"]))


# -- review notes --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredReview:
    note: ReviewNote
    check: CheckResult | None  # None until checked
    checked_at: datetime | None
    created_at: datetime
    created_by: str


def next_daily_id(conn: sa.Connection, column: sa.Column, prefix: str, day: date) -> str:
    """The first free ``<prefix>-YYYYMMDD-NNN`` in `column`: the seeds' id shape."""
    start = f"{prefix}-{day:%Y%m%d}-"
    taken = conn.execute(sa.select(column).where(column.startswith(start))).scalars()
    numbers = [int(value[len(start):]) for value in taken if value[len(start):].isdigit()]
    return f"{start}{max(numbers, default=0) + 1:03d}"


def next_review_id(conn: sa.Connection, day: date) -> str:
    return next_daily_id(conn, review_notes.c.review_id, "chargeback-review", day)


def save_review(conn: sa.Connection, note: ReviewNote, *, actor: str,
                reason: str = "") -> StoredReview:
    """Store a new note (its result as the check will set it, not as drafted)."""
    refuse_secrets(f"review {note.review_id}", note.to_json())
    if _review_row(conn, note.review_id) is not None:
        raise EvidenceError(f"review {note.review_id} exists already")
    draft = replace(note, review_result=None)
    now = datetime.now(UTC)
    conn.execute(review_notes.insert().values(
        review_id=draft.review_id, usage_period=draft.usage_period, team_owner=draft.team_owner,
        review_result=None, follow_up_owner=draft.follow_up_owner, note=draft.to_json(),
        created_at=now, created_by=actor,
    ))
    record_change(conn, actor=actor, action="review.create", object_type="review",
                  object_id=draft.review_id, after=draft.to_dict(), reason=reason)
    return StoredReview(draft, None, None, now, actor)


def get_review(conn: sa.Connection, review_id: str) -> StoredReview:
    row = _review_row(conn, review_id)
    if row is None:
        raise EvidenceError(f"no review {review_id!r}; `spendtrail review export` lists them")
    return _review_from_row(row)


def list_reviews(conn: sa.Connection, period: str | None = None) -> list[StoredReview]:
    query = sa.select(review_notes).order_by(review_notes.c.review_id)
    if period is not None:
        query = query.where(review_notes.c.usage_period == period)
    return [_review_from_row(row) for row in conn.execute(query).mappings()]


def check_review(conn: sa.Connection, review_id: str, *, actor: str,
                 result: str | None = None) -> StoredReview:
    """Check a stored note against the checklist, the linter and the source register, and
    record the result (a reviewer may record a stricter one, never a milder one). A row that
    does not pass opens a follow-up routed to its follow-up owner."""
    before = get_review(conn, review_id)
    check = check_note(before.note, known_sources(conn))
    note = mark(before.note, check, result)
    now = datetime.now(UTC)
    conn.execute(review_notes.update().where(review_notes.c.review_id == review_id).values(
        review_result=note.review_result, follow_up_owner=note.follow_up_owner,
        note=note.to_json(), reasons=json.dumps(_reasons_json(check.reasons)), checked_at=now,
    ))
    record_change(conn, actor=actor, action="review.check", object_type="review",
                  object_id=review_id, before=_check_record(before.note, before.check),
                  after=_check_record(note, check), reason=f"marked {result}" if result else "")
    if note.review_result != "pass":
        open_follow_up(conn, origin="review", origin_id=review_id,
                       question=_question(check.reasons) or f"marked {note.review_result}",
                       routed_to=note.follow_up_owner or "owner", actor=actor)
    return StoredReview(note, check, now, before.created_at, before.created_by)


def store_checked(conn: sa.Connection, notes: Iterable[ReviewNote], *, actor: str,
                  reason: str = "") -> list[StoredReview]:
    """Store notes under fresh ids for their review day, then check each."""
    stored = []
    for note in notes:
        reviewed = parse_timestamp(note.reviewed_at or "")
        day = (reviewed or datetime.now(UTC)).date()
        saved = save_review(conn, replace(note, review_id=next_review_id(conn, day)),
                            actor=actor, reason=reason)
        stored.append(check_review(conn, saved.note.review_id, actor=actor))
    return stored


def _question(reasons: tuple[Reason, ...]) -> str:
    return "; ".join(reason.message for reason in reasons)


def _reasons_json(reasons: tuple[Reason, ...]) -> list[dict[str, str]]:
    return [{"code": r.code, "message": r.message} for r in reasons]


def _check_record(note: ReviewNote, check: CheckResult | None) -> dict[str, object]:
    return {"review_result": note.review_result, "follow_up_owner": note.follow_up_owner,
            "reasons": [] if check is None else list(check.codes)}


def _review_row(conn: sa.Connection, review_id: str) -> sa.RowMapping | None:
    return conn.execute(
        sa.select(review_notes).where(review_notes.c.review_id == review_id)
    ).mappings().first()


def _review_from_row(row: sa.RowMapping) -> StoredReview:
    note = ReviewNote.from_json(row["note"])
    check = None
    if row["reasons"] is not None and note.review_result is not None:
        # A code a later checklist retired has no severity; it is dropped, not a load error.
        reasons = tuple(Reason(r["code"], r["message"]) for r in json.loads(row["reasons"])
                        if r["code"] in REASON_CODES)
        worst = max((r.severity for r in reasons), key=("needs_follow_up", "fail").index,
                    default=None)
        check = CheckResult(worst or "pass", reasons,
                            None if worst is None else note.follow_up_owner)
    return StoredReview(note, check, as_utc(row["checked_at"]), as_utc(row["created_at"]),
                        row["created_by"])
