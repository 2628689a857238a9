"""The append-only audit log: who changed what, when, from what, to what, and why."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from spendtrail.ledger.schema import audit_log


def record_change(
    conn: sa.Connection,
    *,
    actor: str,
    action: str,
    object_type: str,
    object_id: str,
    before: Any = None,
    after: Any = None,
    reason: str = "",
) -> None:
    """Write one audit row in the caller's transaction, so the change and its record commit
    together or not at all."""
    conn.execute(
        audit_log.insert().values(
            at=datetime.now(UTC),
            actor=actor,
            action=action,
            object_type=object_type,
            object_id=object_id,
            before=None if before is None else json.dumps(before, sort_keys=True, default=str),
            after=None if after is None else json.dumps(after, sort_keys=True, default=str),
            reason=reason,
        )
    )
