"""The exception queue: quarantined usage by reason and captured owner. It belongs to no
owner yet, so only users who see every owner read it; finance and admins work it."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from spendtrail.access.principal import Principal
from spendtrail.access.roles import Permission
from spendtrail.allocation.exceptions import (
    ExceptionGroup,
    ExceptionQueueError,
    assign,
    find_group,
    open_groups,
    resolutions,
    resolve,
)
from spendtrail.console.errors import NotFound
from spendtrail.console.types import (
    AssignRequest,
    AssignResult,
    ExceptionDetail,
    ExceptionEvent,
    ExceptionItem,
    ResolveRequest,
    amount,
    amounts,
)
from spendtrail.periods import parse_period


def queue(engine: sa.Engine, who: Principal, period: str | None = None) -> list[ExceptionItem]:
    who.require_everyone()
    chosen = None if period is None else parse_period(period)
    with engine.connect() as conn:
        groups = open_groups(conn, chosen)
    now = datetime.now(UTC)
    return [_item(g, now) for g in groups]


def group_detail(
    engine: sa.Engine, who: Principal, group_id: str, limit: int = 100
) -> ExceptionDetail:
    who.require_everyone()
    with engine.connect() as conn:
        group = _find(conn, group_id)
        history = resolutions(conn, group_id)
    events = [
        ExceptionEvent(
            event_id=e.event_id,
            started_at=e.started_at,
            model=e.model,
            cost_status=e.cost_status,
            cost=None
            if e.currency is None or e.amount_pico is None
            else amount(e.amount_pico, e.currency),
        )
        for e in group.events[:limit]
    ]
    return ExceptionDetail(
        group=_item(group, datetime.now(UTC)),
        events=events,
        resolutions=[{k: str(v) for k, v in h.items()} for h in history],
    )


def assign_group(
    engine: sa.Engine, who: Principal, group_id: str, request: AssignRequest
) -> AssignResult:
    who.require_everyone(Permission.manage_exceptions)
    with engine.begin() as conn:
        _find(conn, group_id)
        done = assign(
            conn,
            application=request.application,
            actor=who.actor,
            reason=request.reason,
            group=group_id,
        )
    return AssignResult(
        application=done.application,
        events=done.events,
        amount=amounts(done.amounts),
        unpriced=done.unpriced,
        groups=list(done.groups),
    )


def resolve_group(
    engine: sa.Engine, who: Principal, group_id: str, request: ResolveRequest
) -> ExceptionItem:
    who.require_everyone(Permission.manage_exceptions)
    with engine.begin() as conn:
        _find(conn, group_id)
        group = resolve(conn, group_id, note=request.note, actor=who.actor)
    return _item(group, datetime.now(UTC))


def _find(conn: sa.Connection, group_id: str) -> ExceptionGroup:
    try:
        return find_group(conn, group_id)
    except ExceptionQueueError as exc:
        raise NotFound(str(exc)) from None


def _item(group: ExceptionGroup, now: datetime) -> ExceptionItem:
    return ExceptionItem(
        id=group.id,
        reasons=group.reasons,
        captured_application=group.owner_label,
        events=len(group.events),
        unpriced=group.unpriced,
        oldest=group.oldest,
        age_days=group.age_days(now),
        amount=amounts(group.amounts),
    )
