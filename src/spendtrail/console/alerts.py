"""Alerts as the console shows them: those a user's scope admits (an alert about one of its
owners; company-wide alerts only for every-owner users), each with its delivery state."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from spendtrail.access.principal import Principal
from spendtrail.access.roles import Permission
from spendtrail.alerts.model import Alert
from spendtrail.alerts.store import count_alerts, latest_attempts, list_alerts
from spendtrail.console.types import AlertDelivery, AlertItem

BUDGET_KINDS = ("budget_threshold", "budget_hard_limit", "budget_forecast")


def alert_items(
    engine: sa.Engine,
    who: Principal,
    *,
    kinds: list[str] | None = None,
    limit: int = 100,
) -> list[AlertItem]:
    """The newest alerts in the user's view."""
    who.require(Permission.read)
    with engine.connect() as conn:
        found = list_alerts(conn, scope=who.scope, kinds=kinds, limit=limit)
        return _items(conn, found)


def recent(
    engine: sa.Engine, who: Principal, since: datetime, shown: int
) -> tuple[int, list[AlertItem]]:
    """How many alerts were raised since ``since`` in the user's view, and the newest few."""
    who.require(Permission.read)
    with engine.connect() as conn:
        count = count_alerts(conn, who.scope, since)
        return count, _items(conn, list_alerts(conn, scope=who.scope, limit=shown))


def budget_alerts(
    conn: sa.Connection, who: Principal, budget_id: str, scope: tuple[str, str]
) -> list[AlertItem]:
    """The alerts raised on one budget (``scope``: the owner it limits), newest first."""
    found = list_alerts(conn, scope=who.scope, owner=scope, kinds=BUDGET_KINDS)
    return _items(conn, [a for a in found if a.details.get("budget") == budget_id])


def _items(conn: sa.Connection, found: list[Alert]) -> list[AlertItem]:
    ids = [a.id for a in found if a.id is not None]
    latest = latest_attempts(conn, ids)
    return [
        AlertItem(
            id=a.id or 0,
            kind=a.kind,
            title=a.title,
            message=a.message,
            period=a.period,
            owner=str(a.owner),
            created_at=a.created_at,
            details=a.details,
            deliveries=[
                AlertDelivery(channel=channel, status=d.status, attempts=d.attempt, at=d.at)
                for (alert_id, channel), d in sorted(latest.items())
                if alert_id == a.id
            ],
        )
        for a in found
    ]
