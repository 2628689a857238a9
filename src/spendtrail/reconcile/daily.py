"""Daily reconciliation (docs/reconcile.md, "Every closed day"): each one-day bill of a
provider that no record has judged yet, reconciled against its day as soon as the day is
closed, oldest first. `spendtrail bills fetch` stores one such bill per day and report.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa

from spendtrail.ledger.schema import bill_imports, reconciliations
from spendtrail.periods import Period
from spendtrail.reconcile.record import ReconcileError, Reconciliation, reconcile

# The report of each provider that carries amounts (the usage reports carry tokens only).
DAILY_FORMATS = {
    "cometapi": "cometapi-json",
    "openai": "openai-costs",
    "anthropic": "anthropic-cost",
}


def reconcile_daily(
    engine: sa.Engine,
    provider: str,
    *,
    reviewer: str,
    actor: str,
    tolerance: Decimal,
    now: datetime | None = None,
) -> list[Reconciliation]:
    """Reconcile every closed day that has a live one-day bill of `provider` and no record
    yet, writing one record per day; the records, oldest day first."""
    bill_format = DAILY_FORMATS.get(provider)
    if bill_format is None:
        raise ReconcileError(
            f"unknown bill source {provider!r}; expected one of {', '.join(DAILY_FORMATS)}"
        )
    today = (now or datetime.now(UTC)).astimezone(UTC).date()
    b = bill_imports.c
    judged = sa.select(reconciliations.c.bill_import_id)
    query = (
        sa.select(b.id, b.first_day)
        .where(
            b.format == bill_format,
            b.provider == provider,
            b.voided_at.is_(None),
            b.first_day == b.last_day,
            b.first_day < today,
            b.id.not_in(judged),
        )
        .order_by(b.first_day, b.id)
    )
    with engine.connect() as conn:
        due: list[tuple[int, date]] = [tuple(row) for row in conn.execute(query)]
    return [
        reconcile(
            engine,
            period=Period(day, day + timedelta(days=1), day.isoformat()),
            bill_id=bill_id,
            reviewer=reviewer,
            actor=actor,
            tolerance=tolerance,
            provider=provider,
        )
        for bill_id, day in due
    ]
