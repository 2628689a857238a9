"""Importing list prices from the installed genai-prices package into the ledger: the plan
of ``spendtrail.pricing.genai_import`` stored by ``add_entries``, conflicts reported, not
raised. Imported only by what imports prices: it loads the whole genai-prices data set."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

import sqlalchemy as sa

from spendtrail.ledger.prices import add_entries
from spendtrail.pricing.genai_import import Skipped, plan_genai_import


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
    as_of: date | None = None,
) -> GenaiImportReport:
    """Import list prices as of `as_of` (default today); idempotent: identical entries already
    stored are counted, not added."""
    plan = plan_genai_import(provider_ids, as_of or datetime.now(UTC).date())
    result = add_entries(conn, plan.entries, actor=actor, reason=reason, skip_conflicts=True)
    skipped = plan.skipped + [
        Skipped(r.entry.provider, r.entry.model_match, f"not imported: {r.reason}")
        for r in result.rejected
    ]
    return GenaiImportReport(result.added, result.unchanged, result.closed, result.rechecked,
                             skipped, plan.checked_at)
