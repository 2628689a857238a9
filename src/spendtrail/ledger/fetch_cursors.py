"""How far each provider account's bill API has been read (``bill_fetch_cursors``): the last
closed UTC day whose bills are stored, per source and account (the API's base URL)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import sqlalchemy as sa

from spendtrail.ledger.schema import bill_fetch_cursors

_c = bill_fetch_cursors.c


def read_cursor(conn: sa.Connection, source: str, account: str) -> date | None:
    return conn.execute(
        sa.select(_c.fetched_through).where(_c.source == source, _c.account == account)
    ).scalar()


def move_cursor(conn: sa.Connection, source: str, account: str, day: date, actor: str) -> None:
    values = {"fetched_through": day, "updated_at": datetime.now(UTC), "updated_by": actor}
    moved = conn.execute(
        bill_fetch_cursors.update().where(_c.source == source, _c.account == account).values(values)
    )
    if not moved.rowcount:
        conn.execute(bill_fetch_cursors.insert().values(source=source, account=account, **values))
