"""Review evidence: chargeback review notes, the checklist they are checked against, the linter
that guards what any note or handoff may say, and their Markdown and JSON exports.

The names here are pure and database-free. Storage builds on them: ``store`` (sources, review
notes), ``draft``, ``followups``, ``audit_view``, ``smoke`` and ``handoff``; see docs/evidence.md.
"""

from spendtrail.evidence.checklist import REASON_CODES, CheckResult, Reason, check_note, mark
from spendtrail.evidence.errors import EvidenceError
from spendtrail.evidence.export import export_json, render_markdown
from spendtrail.evidence.linter import LINT_CODES, Finding, cited_ids, lint
from spendtrail.evidence.notes import (
    FOLLOW_UP_ROLES,
    RESULTS,
    Claim,
    ReviewNote,
    SourceRef,
    utc_timestamp,
)
from spendtrail.evidence.sample import default_sources, sample_notes
from spendtrail.evidence.sources import CLAIM_KINDS, Source, index_sources

__all__ = [
    "CLAIM_KINDS",
    "FOLLOW_UP_ROLES",
    "LINT_CODES",
    "REASON_CODES",
    "RESULTS",
    "CheckResult",
    "Claim",
    "EvidenceError",
    "Finding",
    "Reason",
    "ReviewNote",
    "Source",
    "SourceRef",
    "check_note",
    "cited_ids",
    "default_sources",
    "export_json",
    "index_sources",
    "lint",
    "mark",
    "render_markdown",
    "sample_notes",
    "utc_timestamp",
]
