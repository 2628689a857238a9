"""Review notes for people: Markdown (a table, then the seed's logging block per note) and JSON.

Exports show each note with the result of its check recorded (or the reviewer's stricter
one) and the reasons beside it. Every string goes through ``redact`` on the way out, so even a
note that failed for a leaked credential cannot carry it into an export.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from spendtrail.evidence.checklist import CheckResult, mark
from spendtrail.evidence.notes import RESULTS, ReviewNote, SourceRef
from spendtrail.redact import redact

Review = tuple[ReviewNote, CheckResult]

_TABLE_FIELDS = (
    "review_id",
    "usage_period",
    "team_owner",
    "allocation_rule",
    "shared_decision",
    "usage_unit_checked",
    "source_url_checked",
    "review_result",
    "follow_up_owner",
    "reviewed_at",
    "reviewer_role",
)


def recorded(note: ReviewNote, check: CheckResult) -> ReviewNote:
    """The note as exported: the reviewer's result when it is at least as strict as the
    check's, else the check's."""
    stored = note.review_result
    keep = stored is not None and RESULTS.index(stored) >= RESULTS.index(check.result)
    return mark(note, check, stored if keep else None)


def render_markdown(reviews: Sequence[Review], title: str = "Chargeback review notes") -> str:
    lines = [f"# {redact(title)}", ""]
    rows = [(recorded(note, check), check) for note, check in reviews]
    header = [*_TABLE_FIELDS, "reasons"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for note, check in rows:
        cells = [_cell(_table_value(note, name)) for name in _TABLE_FIELDS]
        cells.append(_cell(", ".join(check.codes) or "—"))
        lines.append("| " + " | ".join(cells) + " |")
    for note, check in rows:
        lines += ["", f"## {redact(note.review_id)}", ""]
        block = "\n".join(_logging_block(note))
        fence = _fence(block)
        lines += [fence + "yaml", block, fence]
        if note.claims:
            lines += ["", "Claims:", ""]
            for claim in note.claims:
                cited = ", ".join(f"[src:{i}]" for i in claim.source_ids) or "no source"
                text = f"{claim.kind} ({claim.status}): {claim.text} — {cited}"
                lines.append("- " + _inline(text))
        lines += ["", f"Result: **{note.review_result}**"]
        if check.reasons:
            lines += ["", "Reasons:", ""]
            lines += [f"- `{r.code}` ({r.severity}): {_inline(r.message)}" for r in check.reasons]
    return "\n".join(lines) + "\n"


def export_json(reviews: Sequence[Review]) -> str:
    items = []
    for note, check in reviews:
        data = recorded(note, check).to_dict()
        data["reasons"] = [
            {"code": r.code, "severity": r.severity, "message": r.message} for r in check.reasons
        ]
        items.append(_redacted(data))
    return json.dumps({"review_notes": items}, ensure_ascii=False, indent=2) + "\n"


def _ref_text(ref: SourceRef) -> str:
    parts = [part for part in (ref.source_id, ref.url) if part]
    accessed = f" (accessed {ref.accessed.isoformat()})" if ref.accessed else " (no date)"
    return " ".join(parts) + accessed


def _table_value(note: ReviewNote, name: str) -> str:
    if name == "source_url_checked":
        return "; ".join(_ref_text(ref) for ref in note.source_url_checked) or "—"
    if name == "shared_decision" and not note.shared:
        return note.shared_decision or "not shared"
    return getattr(note, name) or "—"


def _logging_block(note: ReviewNote) -> list[str]:
    """The seed's ``field: "value"`` layout; values are JSON strings, which YAML reads too."""
    lines = []
    for name, value in note.to_dict().items():
        if name == "source_url_checked":
            value = [_ref_text(ref) for ref in note.source_url_checked]
        elif name == "claims":
            value = [f"{c.kind} ({c.status}): {c.text}" for c in note.claims]
        lines.append(f"{name}: {json.dumps(_redacted(value), ensure_ascii=False)}")
    return lines


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [_redacted(item) for item in value]
    if isinstance(value, dict):
        return {key: _redacted(item) for key, item in value.items()}
    return value


def _inline(text: str) -> str:
    # One line, and "<name>" escaped so Markdown does not read it as an HTML tag.
    return redact(" ".join(text.split())).replace("<", "\\<")


def _cell(text: str) -> str:
    return _inline(text).replace("|", "\\|")


def _fence(block: str) -> str:
    longest = max((len(run) for run in re.findall(r"`+", block)), default=0)
    return "`" * max(3, longest + 1)
