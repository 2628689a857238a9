"""The review checklist: one stable reason code per rule, a result, and who follows up.

The rules are the seeds' minimum assertions: an owner, a usage unit, an allocation rule (and,
for shared usage, an explicit decision), a dated source for every external claim, a reviewer
role and a UTC timestamp. A missing or unsupported item fails the row; open questions (an
unverified claim, a cost held until ownership is resolved, a source past its review cadence)
make it ``needs_follow_up``; ``pass`` needs every rule to hold and the linter to find nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import date
from types import MappingProxyType
from typing import Literal

from spendtrail.evidence.errors import EvidenceError
from spendtrail.evidence.linter import LINT_CODES, Finding, cited_ids, lint
from spendtrail.evidence.notes import (
    FOLLOW_UP_ROLES,
    RESULTS,
    REVIEW_ID,
    SHARED_DECISIONS,
    Result,
    ReviewNote,
    parse_timestamp,
    usage_month,
)
from spendtrail.evidence.sources import Source
from spendtrail.redact import redact

Severity = Literal["fail", "needs_follow_up"]
OWNER, PLATFORM_LEAD, FINANCE_PARTNER, PROVIDER_SUPPORT = FOLLOW_UP_ROLES


@dataclass(frozen=True, slots=True)
class Rule:
    severity: Severity
    follow_up: str  # the role a row goes to when this is its first reason
    description: str


_FAIL: Severity = "fail"
_FOLLOW: Severity = "needs_follow_up"
_LINT_ROUTES = {"secret": PLATFORM_LEAD, "raw_content": OWNER, "credential_placeholder": OWNER}


def _lint(*codes: str) -> list[tuple[str, Rule]]:
    return [
        (f"lint:{code}", Rule(_FAIL, _LINT_ROUTES.get(code, FINANCE_PARTNER), LINT_CODES[code]))
        for code in codes
    ]


# Stable codes in reporting order. The order is also the routing priority: the first reason
# names the follow-up owner. A leaked credential comes first (it must be rotated), then the
# seed's order: the owner map, the allocation rule, the usage unit, the sources.
REASON_CODES: dict[str, Rule] = dict(
    [
        *_lint("secret"),
        ("missing_owner", Rule(_FAIL, PLATFORM_LEAD,
            "no team owner; route the row to the ownership queue instead of assuming one")),
        ("shared_without_decision", Rule(_FAIL, PLATFORM_LEAD,
            f"shared usage without an explicit shared-cost decision ({SHARED_DECISIONS})")),
        ("bad_shared_decision", Rule(_FAIL, PLATFORM_LEAD,
            f"the shared-cost decision is not one of {SHARED_DECISIONS}")),
        ("missing_allocation_rule", Rule(_FAIL, PLATFORM_LEAD, "no allocation rule named")),
        ("missing_usage_unit", Rule(_FAIL, OWNER, "no usage unit named")),
        ("missing_source", Rule(_FAIL, OWNER, "no source checked is listed")),
        ("claim_without_source", Rule(_FAIL, FINANCE_PARTNER,
            "an external claim is asserted without a source")),
        ("unknown_source", Rule(_FAIL, FINANCE_PARTNER,
            "a source id that is not a known source and has no URL in the note")),
        ("source_does_not_cover", Rule(_FAIL, FINANCE_PARTNER,
            "a claim cites only sources that do not cover its kind")),
        ("undated_source", Rule(_FAIL, OWNER, "a source without the date it was accessed")),
        *_lint(*(code for code in LINT_CODES if code.startswith("unsupported_"))),
        *_lint("raw_content", "credential_placeholder"),
        ("missing_reviewer_role", Rule(_FAIL, OWNER, "no reviewer role")),
        ("missing_timestamp", Rule(_FAIL, OWNER, "no review timestamp")),
        ("bad_timestamp", Rule(_FAIL, OWNER, "the review timestamp is not YYYY-MM-DDTHH:MM:SSZ")),
        ("bad_period", Rule(_FAIL, OWNER, "the usage period is not YYYY-MM")),
        ("review_before_period", Rule(_FAIL, OWNER, "reviewed before the usage period began")),
        ("bad_review_id", Rule(_FAIL, OWNER,
            "the review id is not chargeback-review-YYYYMMDD-NNN")),
        ("unverified_claim", Rule(_FOLLOW, PROVIDER_SUPPORT,
            "a claim recorded as an open question")),
        ("held_shared_cost", Rule(_FOLLOW, PLATFORM_LEAD,
            "shared cost held until ownership is resolved")),
        ("stale_source", Rule(_FOLLOW, FINANCE_PARTNER, "a source is past its review cadence")),
    ]
)

_SHARED_DECISION = re.compile(r"^(?:central|held|split:\s*\S.*)$")
# Values left from the seed's template, such as TEAM_PLACEHOLDER or https://SOURCE-URL-PLACEHOLDER.
_TEMPLATE_VALUE = re.compile(r"PLACEHOLDER|^<[^>]*>$")
_CLAIM_LINT = ("secret", "credential_placeholder", "raw_content")


@dataclass(frozen=True, slots=True)
class Reason:
    code: str
    message: str

    @property
    def severity(self) -> Severity:
        return REASON_CODES[self.code].severity


@dataclass(frozen=True, slots=True)
class CheckResult:
    result: Result
    reasons: tuple[Reason, ...]
    follow_up_owner: str | None  # None only on pass

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(reason.code for reason in self.reasons)


def check_note(
    note: ReviewNote, known_sources: Mapping[str, Source] = MappingProxyType({})
) -> CheckResult:
    """Check one note against the checklist and the linter. `known_sources` are the sources
    the note may cite by id; a source the note lists with an id and a URL is citable too."""
    order = list(REASON_CODES)
    # Messages quote the note's own text; redacted, so a leaked key is reported, never repeated.
    found = (Reason(r.code, redact(r.message)) for r in _reasons(note, known_sources))
    reasons = sorted(found, key=lambda r: order.index(r.code))
    result: Result
    if any(reason.severity == _FAIL for reason in reasons):
        result = "fail"
    elif reasons:
        result = "needs_follow_up"
    else:
        return CheckResult("pass", (), None)
    follow_up = note.follow_up_owner if _filled(note.follow_up_owner) else None
    first = next(reason for reason in reasons if reason.severity == result)
    return CheckResult(result, tuple(reasons), follow_up or REASON_CODES[first.code].follow_up)


def mark(note: ReviewNote, check: CheckResult, result: str | None = None) -> ReviewNote:
    """The note with its result and follow-up owner recorded. A reviewer may record a stricter
    result than the check's, never a milder one: a flagged note cannot be marked pass."""
    result = result or check.result
    if result not in RESULTS:
        raise EvidenceError(f"review_result: expected one of {', '.join(RESULTS)}, got {result!r}")
    if RESULTS.index(result) < RESULTS.index(check.result):
        raise EvidenceError(
            f"{redact(note.review_id)}: cannot mark {result}; the check gives {check.result} "
            f"({', '.join(check.codes)})"
        )
    if result == "pass":
        return replace(note, review_result=result, follow_up_owner=None)
    named = note.follow_up_owner if _filled(note.follow_up_owner) else None
    owner = check.follow_up_owner or named or OWNER  # a stricter manual result still routes
    return replace(note, review_result=result, follow_up_owner=owner)


def _filled(value: str | None) -> bool:
    return bool(value and value.strip() and not _TEMPLATE_VALUE.search(value))


def _reasons(note: ReviewNote, known: Mapping[str, Source]) -> Iterator[Reason]:
    if not REVIEW_ID.match(note.review_id) or not _valid_day(note.review_id[18:26]):
        yield Reason("bad_review_id", f"review_id {note.review_id!r}: expected "
                     "chargeback-review-YYYYMMDD-NNN")
    for name, code in (
        ("team_owner", "missing_owner"),
        ("allocation_rule", "missing_allocation_rule"),
        ("usage_unit_checked", "missing_usage_unit"),
        ("reviewer_role", "missing_reviewer_role"),
    ):
        if not _filled(getattr(note, name)):
            yield Reason(code, f"{name}: {REASON_CODES[code].description}")
    yield from _period_and_time(note)
    yield from _shared(note)
    reviewed = parse_timestamp(note.reviewed_at or "")
    yield from _sources(note, known, reviewed.date() if reviewed else None)
    yield from _lint_fields(note, known)


def _valid_day(text: str) -> bool:
    try:
        date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return False
    return True


def _period_and_time(note: ReviewNote) -> Iterator[Reason]:
    period = usage_month(note.usage_period)
    if period is None:
        yield Reason("bad_period", f"usage_period {note.usage_period!r}: expected YYYY-MM")
    if not _filled(note.reviewed_at):
        yield Reason("missing_timestamp", "reviewed_at: no review timestamp")
        return
    reviewed = parse_timestamp(note.reviewed_at or "")
    if reviewed is None:
        yield Reason("bad_timestamp", f"reviewed_at {note.reviewed_at!r}: expected UTC as "
                     "YYYY-MM-DDTHH:MM:SSZ")
    elif period is not None and reviewed.date() < period.start:
        yield Reason("review_before_period", f"reviewed_at {note.reviewed_at} is before the "
                     f"usage period {note.usage_period} began")


def _shared(note: ReviewNote) -> Iterator[Reason]:
    decision = (note.shared_decision or "").strip()
    if decision and not _SHARED_DECISION.match(decision):
        yield Reason("bad_shared_decision", f"shared_decision {decision!r}: expected "
                     f"{SHARED_DECISIONS}")
    elif note.shared and not decision:
        yield Reason("shared_without_decision", "shared usage: record central, split:<rule name> "
                     "or held before chargeback discussion")
    elif note.shared and decision == "held":
        yield Reason("held_shared_cost", "shared cost is held until ownership is resolved")


def _sources(note: ReviewNote, known: Mapping[str, Source], as_of: date | None) -> Iterator[Reason]:
    refs = [ref for ref in note.source_url_checked if ref.source_id or _filled(ref.url)]
    if not refs:
        yield Reason("missing_source", "source_url_checked: no source checked is listed")
    in_note = {ref.source_id for ref in refs if ref.source_id and _filled(ref.url)}
    accessed: dict[str, date] = {}
    for ref in refs:
        label = ref.source_id or ref.url
        if ref.source_id and ref.source_id not in known and ref.source_id not in in_note:
            yield Reason("unknown_source", f"source_url_checked: {ref.source_id} is not a known "
                         "source and the entry has no URL")
            continue
        source = known.get(ref.source_id) if ref.source_id else None
        day = ref.accessed or (source.accessed if source else None)
        if day is None:
            yield Reason("undated_source", f"source_url_checked: {label} has no accessed date")
        elif ref.source_id:
            accessed[ref.source_id] = max(day, accessed.get(ref.source_id, day))
    for index, claim in enumerate(note.claims, 1):
        where = f"claims[{index}] ({claim.kind})"
        if claim.status == "unverified":
            yield Reason("unverified_claim", f"{where}: open question, not a fact: {claim.text!r}")
        elif not claim.source_ids:
            yield Reason("claim_without_source", f"{where}: asserted without a source: "
                         f"{claim.text!r}")
        unknown = [i for i in claim.source_ids if i not in known and i not in in_note]
        for source_id in unknown:
            yield Reason("unknown_source", f"{where}: cites {source_id}, which is not a known "
                         "source or a source listed in the note")
        sources = [known.get(i) for i in claim.source_ids]
        if (
            claim.status == "asserted" and sources and not unknown
            and not any(source is None or source.supports(claim.kind) for source in sources)
        ):
            yield Reason("source_does_not_cover", f"{where}: {', '.join(claim.source_ids)} "
                         f"do not cover {claim.kind.replace('_', ' ')} claims")
    # Sources cited by claims or in the notes' text, and not re-read in this note, count from
    # their last recorded reading.
    referenced = [i for claim in note.claims for i in claim.source_ids] + cited_ids(note.notes)
    for source_id in referenced:
        if source_id in known:
            accessed.setdefault(source_id, known[source_id].accessed)
    if as_of is not None:
        for source_id, day in accessed.items():
            source = known.get(source_id)
            if source is not None and source.due(day, as_of):
                yield Reason("stale_source", f"{source_id}: last read {day.isoformat()}, past its "
                             f"{source.review_every_days}-day review cadence; re-check it")


def _lint_fields(note: ReviewNote, known: Mapping[str, Source]) -> Iterator[Reason]:
    citable: dict[str, Source | None] = {ref.source_id: None for ref in note.source_url_checked
                                         if ref.source_id and _filled(ref.url)}
    citable.update(known)
    texts: list[tuple[str, str, tuple[str, ...] | None]] = [
        (name, getattr(note, name) or "", None)
        for name in ("team_owner", "allocation_rule", "usage_unit_checked", "reviewer_role",
                     "follow_up_owner", "shared_decision", "notes")
    ]
    texts += [(f"source_url_checked[{i}]", ref.url or "", None)
              for i, ref in enumerate(note.source_url_checked, 1)]
    # A structured claim's support is checked above; its text is linted for leaks only.
    texts += [(f"claims[{i}]", claim.text, _CLAIM_LINT) for i, claim in enumerate(note.claims, 1)]
    for where, text, only in texts:
        for finding in lint(text, citable):
            if only is None or finding.code in only:
                yield _lint_reason(where, finding)


def _lint_reason(where: str, finding: Finding) -> Reason:
    line = f", line {finding.line}" if finding.line > 1 else ""
    return Reason(f"lint:{finding.code}", f"{where}{line}: {finding.message}")
