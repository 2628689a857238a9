"""Review notes, follow-ups, handoffs and the audit log: the books' evidence, which speaks of
every owner, so only users who see every owner read it; finance and admins write notes."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from spendtrail.access.principal import Principal
from spendtrail.access.roles import Permission
from spendtrail.console.errors import NotFound
from spendtrail.console.types import AuditItem, FollowUpItem, HandoffItem, ReviewItem
from spendtrail.errors import SpendtrailError
from spendtrail.evidence.audit_view import audit_entries
from spendtrail.evidence.followups import list_follow_ups
from spendtrail.evidence.handoff import get_handoff
from spendtrail.evidence.notes import ReviewNote
from spendtrail.evidence.store import StoredReview, list_reviews, store_checked


def reviews(engine: sa.Engine, who: Principal, period: str | None = None) -> list[ReviewItem]:
    who.require_everyone()
    with engine.connect() as conn:
        return [_review(r) for r in list_reviews(conn, period)]


def write_review(engine: sa.Engine, who: Principal, note: dict, reason: str = "") -> ReviewItem:
    """Store a review note (the JSON shape of docs/evidence.md) under a fresh id and check
    it against the checklist, the linter and the source register."""
    who.require_everyone(Permission.write_reviews)
    parsed = ReviewNote.from_dict(note)
    with engine.begin() as conn:
        stored = store_checked(conn, [parsed], actor=who.actor, reason=reason)
    return _review(stored[0])


def follow_ups(
    engine: sa.Engine, who: Principal, include_resolved: bool = False
) -> list[FollowUpItem]:
    who.require_everyone()
    now = datetime.now(UTC)
    with engine.connect() as conn:
        items = list_follow_ups(conn, include_resolved=include_resolved)
    return [
        FollowUpItem(
            id=f.id,
            origin=f.origin,
            origin_id=f.origin_id,
            question=f.question,
            routed_to=f.routed_to,
            opened_at=f.opened_at,
            age_days=f.age_days(now),
            resolved=f.resolved_at is not None,
        )
        for f in items
    ]


def handoff(engine: sa.Engine, who: Principal, handoff_id: str | None = None) -> HandoffItem:
    who.require_everyone()
    with engine.connect() as conn:
        try:
            found = get_handoff(conn, handoff_id)
        except SpendtrailError as exc:
            raise NotFound(str(exc)) from None
    return HandoffItem(
        id=found.id, created_at=found.created_at, created_by=found.created_by, record=found.record()
    )


def audit(
    engine: sa.Engine,
    who: Principal,
    *,
    object_type: str | None = None,
    actor: str | None = None,
    limit: int = 200,
) -> list[AuditItem]:
    who.require_everyone()
    with engine.connect() as conn:
        entries = audit_entries(
            conn, object_types=(object_type,) if object_type else (), actor=actor, limit=limit
        )
    return [
        AuditItem(
            id=e.id,
            at=e.at,
            actor=e.actor,
            action=e.action,
            object_type=e.object_type,
            object_id=e.object_id,
            before=e.before,
            after=e.after,
            reason=e.reason,
        )
        for e in entries
    ]


def _review(stored: StoredReview) -> ReviewItem:
    note = stored.note
    return ReviewItem(
        review_id=note.review_id,
        usage_period=note.usage_period,
        team_owner=note.team_owner,
        review_result=note.review_result,
        created_at=stored.created_at,
        created_by=stored.created_by,
        checked_at=stored.checked_at,
        note=note.to_dict(),
    )
