"""The small set of books the allocation and exception-queue tests share, and a check that it
holds what those tests assume."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa

from spendtrail.events import AllocationContext, Usage, new_event
from spendtrail.ledger.ingest import Ingester
from spendtrail.ledger.schema import events

MINI = 450_000_000  # gpt-4o-mini, 1000 input + 500 output tokens, in pico-USD
FULL = 7_500_000_000  # gpt-4o, the same usage


def usage_event(day: date, app: str | None, model: str = "gpt-4o-mini", workload="batch"):
    return new_event(
        started_at=datetime(day.year, day.month, day.day, 12, tzinfo=UTC),
        provider="cometapi", model_requested=model,
        context=AllocationContext(application=app, environment="production",
                                  workload_class=workload),
        usage=Usage(input_tokens=1000, output_tokens=500),
    )


EARLY, LATE, NOVEMBER = date(2026, 10, 5), date(2026, 10, 20), date(2026, 11, 2)
BOOKS = [
    (EARLY, "search-summaries", "gpt-4o-mini"),
    (EARLY, "search-summaries", "gpt-4o-mini"),
    (EARLY, "search-summaries", "mystery-model"),  # unpriced
    (EARLY, "contract-review", "gpt-4o"),
    (EARLY, "platform-shared", "gpt-4o-mini"),
    (EARLY, "platform-shared", "gpt-4o-mini"),
    (EARLY, "platform-shared", "gpt-4o-mini"),
    (EARLY, "ghost-app", "gpt-4o-mini"),  # quarantined: unknown_application
    (EARLY, None, "gpt-4o-mini"),  # quarantined: untagged
    (LATE, "platform-shared", "gpt-4o"),
    (LATE, "search-summaries", "gpt-4o-mini"),
    (NOVEMBER, "platform-shared", "gpt-4o-mini"),
]


@pytest.fixture
def books(seeded):
    """The seeded ledger (example registry and prices) with BOOKS ingested."""
    Ingester(seeded).ingest_events([usage_event(*item) for item in BOOKS])
    return seeded


def test_the_books_hold_what_the_tests_assume(books):
    e = events.c
    with books.connect() as conn:
        rows = conn.execute(sa.select(e.application, e.allocation_status, e.allocation_reasons)
                            .order_by(e.started_at, e.application)).all()
    statuses = {(app, status, reasons) for app, status, reasons in rows}
    assert (None, "quarantined", "missing_owner") in statuses
    assert ("ghost-app", "quarantined", "unknown_application") in statuses
    assert ("platform-shared", "shared", "") in statuses
    assert len(rows) == len(BOOKS)
