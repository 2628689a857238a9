"""The follow-up queue: questions a review, reconciliation or smoke test could not answer,
routed to a role and kept open, with their age, until someone resolves them with a note."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from spendtrail.evidence.errors import EvidenceError
from spendtrail.evidence.notes import FOLLOW_UP_ROLES
from spendtrail.ledger.audit import record_change
from spendtrail.ledger.db import as_utc
from spendtrail.ledger.schema import follow_ups
from spendtrail.redact import redact

ORIGINS: tuple[str, ...] = ("review", "reconciliation", "smoke")


@dataclass(frozen=True, slots=True)
class FollowUp:
    id: int
    origin: str
    origin_id: str
    question: str
    routed_to: str
    opened_at: datetime
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    resolution: str | None = None

    def age_days(self, now: datetime) -> int:
        return ((self.resolved_at or now) - self.opened_at).days


def open_follow_up(
    conn: sa.Connection, *, origin: str, origin_id: str, question: str, routed_to: str,
    actor: str,
) -> FollowUp:
    """Open a follow-up, or return the one already open for the same object, so checking a
    note twice does not queue the same question twice."""
    if origin not in ORIGINS:
        raise EvidenceError(f"origin: expected one of {', '.join(ORIGINS)}, got {origin!r}")
    if not routed_to.strip():  # usually one of FOLLOW_UP_ROLES; a note may name another
        raise EvidenceError(f"routed_to: expected a role such as {', '.join(FOLLOW_UP_ROLES)}")
    f = follow_ups.c
    existing = conn.execute(
        sa.select(follow_ups).where(
            f.origin == origin, f.origin_id == origin_id, f.resolved_at.is_(None)
        )
    ).mappings().first()
    if existing is not None:
        return _from_row(existing)
    values = {"origin": origin, "origin_id": origin_id, "question": redact(question),
              "routed_to": routed_to, "opened_at": datetime.now(UTC)}
    new_id = conn.execute(follow_ups.insert().values(**values)).inserted_primary_key[0]
    item = FollowUp(id=new_id, **values)
    record_change(conn, actor=actor, action="follow_up.open", object_type="follow_up",
                  object_id=str(new_id), after=asdict(item), reason=f"{origin} {origin_id}")
    return item


def list_follow_ups(
    conn: sa.Connection, *, include_resolved: bool = False, role: str | None = None
) -> list[FollowUp]:
    query = sa.select(follow_ups).order_by(follow_ups.c.opened_at, follow_ups.c.id)
    if not include_resolved:
        query = query.where(follow_ups.c.resolved_at.is_(None))
    if role is not None:
        query = query.where(follow_ups.c.routed_to == role)
    return [_from_row(row) for row in conn.execute(query).mappings()]


def resolve_follow_up(conn: sa.Connection, follow_up_id: int, *, note: str, actor: str) -> FollowUp:
    """Close a follow-up with what answered it; audited, and never done twice."""
    if not note.strip():
        raise EvidenceError("resolve: a note saying what answered the question is required")
    row = conn.execute(
        sa.select(follow_ups).where(follow_ups.c.id == follow_up_id)
    ).mappings().first()
    if row is None:
        raise EvidenceError(f"no follow-up {follow_up_id}; `spendtrail followups list` shows them")
    before = _from_row(row)
    if before.resolved_at is not None:
        raise EvidenceError(f"follow-up {follow_up_id} was resolved already by "
                            f"{before.resolved_by}")
    values = {"resolved_at": datetime.now(UTC), "resolved_by": actor, "resolution": redact(note)}
    conn.execute(follow_ups.update().where(follow_ups.c.id == follow_up_id).values(**values))
    after = FollowUp(**{**asdict(before), **values})
    record_change(conn, actor=actor, action="follow_up.resolve", object_type="follow_up",
                  object_id=str(follow_up_id), before=asdict(before), after=asdict(after),
                  reason=values["resolution"])
    return after


def _from_row(row: sa.RowMapping) -> FollowUp:
    data = dict(row)
    return FollowUp(**{**data, "opened_at": as_utc(data["opened_at"]),
                       "resolved_at": as_utc(data["resolved_at"])})
