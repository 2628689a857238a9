"""The two-row sample review note: before reviewing a whole period, review one row that should
pass and one that should fail with the same checklist, so both outcomes are seen working."""

from __future__ import annotations

from datetime import UTC, date, datetime

from spendtrail.evidence.checklist import check_note, mark
from spendtrail.evidence.errors import EvidenceError
from spendtrail.evidence.notes import ReviewNote, SourceRef, usage_month, utc_timestamp
from spendtrail.evidence.sources import Source, index_sources


def default_sources(accessed: date) -> tuple[Source, ...]:
    """The public sources a chargeback review checks by default, read on `accessed`. The
    FinOps pages frame ownership and units and support no provider claim; only the provider's
    pricing page supports a price, and pricing copy drifts, so it is re-read monthly."""
    return (
        Source("finops-allocation", "https://www.finops.org/framework/capabilities/allocation/",
               accessed, "allocation owner, metadata basis, shared cost treatment", frozenset()),
        Source("finops-unit-economics",
               "https://www.finops.org/framework/capabilities/unit-economics/",
               accessed, "unit basis", frozenset()),
        Source("cometapi-help-center", "https://apidoc.cometapi.com/support/help-center",
               accessed, "support path for account, pricing and usage questions", frozenset()),
        Source("cometapi-pricing", "https://apidoc.cometapi.com/pricing/about-pricing",
               accessed, "pricing units and billing assumptions",
               frozenset({"price", "billing_treatment"}), review_every_days=31),
    )


def sample_notes(
    period: str,
    *,
    team_owner: str,
    allocation_rule: str = "owner map: registry application to team",
    usage_unit: str = "tokens (input + output) per request",
    reviewer_role: str = "FinOps reviewer",
    reviewed_at: datetime | None = None,
) -> tuple[ReviewNote, ReviewNote]:
    """Two checked notes for `period` (YYYY-MM): one owned row that passes, and one shared row
    with no owner and no shared-cost decision that fails and goes to the ownership queue."""
    moment = reviewed_at or datetime.now(UTC).replace(microsecond=0)
    stamp = utc_timestamp(moment)
    month = usage_month(period)
    if month is None:
        raise EvidenceError(f"period {period!r}: expected YYYY-MM")
    if moment.date() < month.start:
        raise EvidenceError(f"period {period}: a review at {stamp} is before the period began")
    sources = default_sources(moment.date())
    refs = tuple(SourceRef(s.id, s.url, s.accessed) for s in sources[:2])
    day = moment.strftime("%Y%m%d")
    passing = ReviewNote(
        review_id=f"chargeback-review-{day}-001",
        usage_period=period,
        team_owner=team_owner,
        allocation_rule=allocation_rule,
        usage_unit_checked=usage_unit,
        source_url_checked=refs,
        reviewed_at=stamp,
        reviewer_role=reviewer_role,
        notes="Owner, allocation rule and usage unit match the owner map for the period. "
        "No price, limit or support claim is made; this does not show the team accepted "
        "the chargeback.",
    )
    failing = ReviewNote(
        review_id=f"chargeback-review-{day}-002",
        usage_period=period,
        allocation_rule="shared gateway pool",
        usage_unit_checked=usage_unit,
        source_url_checked=refs,
        reviewed_at=stamp,
        reviewer_role=reviewer_role,
        shared=True,
        notes="Shared gateway usage with no accountable owner and no shared-cost decision. "
        "Routed to the ownership queue; no owner or split is assumed.",
    )
    known = index_sources(sources)
    return mark(passing, check_note(passing, known)), mark(failing, check_note(failing, known))
