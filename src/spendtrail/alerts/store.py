"""Alerts and their delivery attempts in the ledger.

An alert is inserted only when its dedup key is new (``ON CONFLICT DO NOTHING``), so two
checks running at once still alert once. Delivery attempts are appended, never edited; an
alert's state on a channel is its latest attempt.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from spendtrail.access.scope import AccessScope
from spendtrail.alerts.model import OWNER_FIELDS, Alert, Owner
from spendtrail.ledger.db import as_utc
from spendtrail.ledger.schema import alert_deliveries, alerts
from spendtrail.ledger.scoping import owner_condition

DELIVERY_STATUSES = ("delivered", "retrying", "failed")


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    alert_id: int
    channel: str
    target: str  # tokens masked
    attempt: int
    at: datetime
    status: str  # delivered | retrying | failed
    response: str


def record_alerts(conn: sa.Connection, found: Iterable[Alert], at: datetime) -> list[Alert]:
    """Insert the alerts whose key is new; returns those, with their id and time."""
    insert = (postgresql if conn.dialect.name == "postgresql" else sqlite).insert
    new = []
    for alert in found:
        values = {
            "dedup_key": alert.key,
            "kind": alert.kind,
            "created_at": at,
            "period_label": alert.period,
            "title": alert.title,
            "message": alert.message,
            "details": json.dumps(alert.details, sort_keys=True),
            **{name: getattr(alert.owner, name) for name in OWNER_FIELDS},
        }
        row = conn.execute(
            insert(alerts)
            .values(values)
            .on_conflict_do_nothing(index_elements=["dedup_key"])
            .returning(alerts.c.id)
        ).first()
        if row is not None:
            new.append(_alert({**values, "id": row.id}))
    return new


def list_alerts(
    conn: sa.Connection,
    *,
    owner: tuple[str, str] | None = None,
    kinds: Sequence[str] | None = None,
    since: datetime | None = None,
    ids: Sequence[int] | None = None,
    limit: int | None = None,
    scope: AccessScope | None = None,
) -> list[Alert]:
    """Alerts newest first. ``owner`` (field, id) keeps only that owner's: company-wide
    alerts are not an owner's; ``scope`` keeps those a user of that scope may see."""
    a = alerts.c
    query = sa.select(alerts).order_by(a.created_at.desc(), a.id.desc())
    if scope is not None:
        query = query.where(owner_condition(scope, alerts))
    if owner is not None:
        name, value = owner
        if name not in OWNER_FIELDS:
            raise ValueError(f"owner field {name!r}: expected one of {', '.join(OWNER_FIELDS)}")
        query = query.where(a[name] == value)
    if kinds is not None:
        query = query.where(a.kind.in_(list(kinds)))
    if since is not None:
        query = query.where(a.created_at >= since)
    if ids is not None:
        query = query.where(a.id.in_(list(ids)))
    if limit is not None:
        query = query.limit(limit)
    return [_alert(dict(row)) for row in conn.execute(query).mappings()]


def count_alerts(conn: sa.Connection, scope: AccessScope, since: datetime) -> int:
    """How many alerts of ``scope`` were raised from ``since`` on."""
    query = (
        sa.select(sa.func.count())
        .select_from(alerts)
        .where(owner_condition(scope, alerts), alerts.c.created_at >= since)
    )
    return conn.execute(query).scalar_one()


def _alert(row: dict) -> Alert:
    return Alert(
        kind=row["kind"],
        key=row["dedup_key"],
        title=row["title"],
        message=row["message"],
        period=row["period_label"],
        owner=Owner(**{name: row[name] for name in OWNER_FIELDS}),
        details=json.loads(row["details"]),
        id=row["id"],
        created_at=as_utc(row["created_at"]),
    )


def record_attempt(
    conn: sa.Connection,
    alert_id: int,
    channel: str,
    target: str,
    *,
    attempt: int,
    at: datetime,
    status: str,
    response: str,
) -> None:
    if status not in DELIVERY_STATUSES:
        raise ValueError(f"delivery status {status!r}: expected {', '.join(DELIVERY_STATUSES)}")
    conn.execute(
        alert_deliveries.insert().values(
            alert_id=alert_id,
            channel=channel,
            target=target[:500],
            attempt=attempt,
            at=at,
            status=status,
            response=response[:500],
        )
    )


def latest_attempts(
    conn: sa.Connection, alert_ids: Sequence[int]
) -> dict[tuple[int, str], Delivery]:
    """The latest attempt per (alert, channel) of these alerts."""
    found: dict[tuple[int, str], Delivery] = {}
    for delivery in list_deliveries(conn, alert_ids=alert_ids):
        found[(delivery.alert_id, delivery.channel)] = delivery  # oldest first: last wins
    return found


def list_deliveries(
    conn: sa.Connection,
    *,
    alert_ids: Sequence[int] | None = None,
    owner: tuple[str, str] | None = None,
) -> list[Delivery]:
    """Delivery attempts, oldest first; ``owner`` keeps the attempts of that owner's alerts."""
    d = alert_deliveries.c
    query = sa.select(alert_deliveries).order_by(d.id)
    if alert_ids is not None:
        query = query.where(d.alert_id.in_(list(alert_ids)))
    if owner is not None:
        name, value = owner
        query = query.where(d.alert_id.in_(sa.select(alerts.c.id).where(alerts.c[name] == value)))
    return [
        Delivery(
            row.id,
            row.alert_id,
            row.channel,
            row.target,
            row.attempt,
            as_utc(row.at),
            row.status,
            row.response,
        )
        for row in conn.execute(query)
    ]
