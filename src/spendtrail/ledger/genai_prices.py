"""Importing list prices from the installed genai-prices package into the ledger: the plan
of ``spendtrail.pricing.genai_import`` stored by ``add_entries``, conflicts reported, not
raised. The data is dated as of the first import of its version, so every later import of
the same version (a reinstall) dates it the same. Imported only by what imports prices: it
loads the whole genai-prices data set."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

import sqlalchemy as sa

from spendtrail.ledger.db import as_utc
from spendtrail.ledger.prices import add_entries
from spendtrail.ledger.schema import price_entries
from spendtrail.pricing.genai_import import ORIGIN, Skipped, plan_genai_import


@dataclass
class GenaiImportReport:
    added: list[str]
    unchanged: list[str]
    closed: list[str]
    rechecked: list[str]
    skipped: list[Skipped]
    checked_at: date  # the data's date, which dates every entry (genai_import.data_date)


def import_genai_prices(
    conn: sa.Connection, provider_ids: Sequence[str], *, actor: str, reason: str = "",
    today: date | None = None,
) -> GenaiImportReport:
    """Import list prices; idempotent: identical entries already stored are counted, not
    added. The data is dated as of the day this genai-prices version was first imported,
    else `today` (default: the current UTC day)."""
    first = conn.execute(sa.select(sa.func.min(price_entries.c.created_at))
                         .where(price_entries.c.origin == ORIGIN)).scalar()
    as_of = as_utc(first).date() if first is not None else today or datetime.now(UTC).date()
    plan = plan_genai_import(provider_ids, as_of)
    result = add_entries(conn, plan.entries, actor=actor, reason=reason, skip_conflicts=True)
    skipped = plan.skipped + [
        Skipped(r.entry.provider, r.entry.model_match, f"not imported: {r.reason}")
        for r in result.rejected
    ]
    return GenaiImportReport(result.added, result.unchanged, result.closed, result.rechecked,
                             skipped, plan.checked_at)
