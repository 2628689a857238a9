"""Review evidence (docs/evidence.md, docs/budget-review.md): chargeback review notes, the
checklist they are checked against, the linter that guards what any note or handoff may say,
and what is stored of them. Layer 6: it reads the books; it never runs a gateway (the smoke
test that does is ``spendtrail.smoke``, above).

Pure, database-free (the names exported here):

- ``notes.py``: the review note and its fields.
- ``sources.py``: the documents an external claim may rest on.
- ``checklist.py``: one stable reason code per rule, a result, who follows up.
- ``linter.py``: no secrets, no raw content, no unsourced claim.
- ``export.py``: notes as Markdown and JSON.
- ``sample.py``: the two-row sample review (one pass, one fail).
- ``errors.py``: the evidence error.

On the ledger:

- ``store.py``: the source register and checked review notes.
- ``draft.py``: a review note drafted from the ledger.
- ``followups.py``: the follow-up queue.
- ``audit_view.py``: the audit log, filtered and redacted.
- ``smoke_log.py``: the smoke test's run log and the latest run.
- ``handoff.py``: the cost handoff record, linted before it is stored.
- ``budget_review.py``: one row per budget and period; its rules are one ordered table.
- ``dbtime.py``: ledger timestamps as aware UTC.
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
