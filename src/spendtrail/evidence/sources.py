"""Sources: the public or internal documents an external claim in a note may rest on.

A source has a stable id, cited in text as ``[src:<id>]`` and in structured claims by id, the
date it was last read, and optionally the claim kinds it may support (a FinOps allocation page
supports no price) and how often it must be re-read (pricing copy drifts).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta

from spendtrail.evidence.errors import EvidenceError

# What a note may claim about a provider; each kind needs a source that supports it.
CLAIM_KINDS: tuple[str, ...] = (
    "price",
    "discount",
    "rate_limit",
    "uptime",
    "support_outcome",
    "billing_treatment",
    "model_availability",
)
SOURCE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,199}$")


def check_source_id(value: object, field: str) -> str:
    if not isinstance(value, str) or not SOURCE_ID.match(value):
        raise EvidenceError(
            f"{field}: expected a source id of letters, digits, '.', '_' or '-' "
            f"(at most 200 characters), got {value!r}"
        )
    return value


@dataclass(frozen=True, slots=True)
class Source:
    """A known source. ``covers`` lists the claim kinds it may support: None for any, empty for
    none (a framework page supports no provider price)."""

    id: str
    url: str
    accessed: date
    purpose: str = ""
    covers: frozenset[str] | None = None
    review_every_days: int | None = None

    def __post_init__(self) -> None:
        check_source_id(self.id, "id")
        if not self.url.strip():
            raise EvidenceError(f"source {self.id}: url: expected a URL, got {self.url!r}")
        if not isinstance(self.accessed, date):
            raise EvidenceError(f"source {self.id}: accessed: expected a date")
        if self.covers is not None:
            object.__setattr__(self, "covers", frozenset(self.covers))
        unknown = sorted((self.covers or frozenset()) - set(CLAIM_KINDS))
        if unknown:
            raise EvidenceError(
                f"source {self.id}: covers: unknown claim kind {unknown[0]!r}; "
                f"expected some of {', '.join(CLAIM_KINDS)}"
            )
        if self.review_every_days is not None and self.review_every_days <= 0:
            raise EvidenceError(f"source {self.id}: review_every_days: expected a positive number")

    def supports(self, kind: str) -> bool:
        return self.covers is None or kind in self.covers

    def due(self, accessed: date, as_of: date) -> bool:
        """Whether a reading on `accessed` is past this source's review cadence on `as_of`."""
        if self.review_every_days is None:
            return False
        return as_of > accessed + timedelta(days=self.review_every_days)


def index_sources(sources: Iterable[Source]) -> dict[str, Source]:
    """Sources by id; two sources with one id are an error, not a silent overwrite."""
    index: dict[str, Source] = {}
    for source in sources:
        if source.id in index:
            raise EvidenceError(f"source {source.id}: listed twice")
        index[source.id] = source
    return index
