"""The chargeback review note: the seed's logging fields, plus what checking needs.

A note is a draft until ``spendtrail.evidence.checklist`` checks it: any field may be empty
here, and the check reports each gap with its reason code. Only closed vocabularies (result,
claim kind and status) and shapes are enforced on construction, so a stored note with a
missing owner can still be loaded, shown and routed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime
from typing import Any, Literal

from spendtrail.evidence.errors import EvidenceError
from spendtrail.evidence.sources import CLAIM_KINDS, check_source_id
from spendtrail.periods import Period, parse_period

Result = Literal["pass", "needs_follow_up", "fail"]
RESULTS: tuple[Result, ...] = ("pass", "needs_follow_up", "fail")  # rising severity
CLAIM_STATUSES: tuple[str, ...] = ("asserted", "unverified")
FOLLOW_UP_ROLES: tuple[str, ...] = ("owner", "platform lead", "finance partner", "provider support")
SHARED_DECISIONS = "central | split:<rule name> | held"

REVIEW_ID = re.compile(r"^chargeback-review-(\d{8})-(\d{3})$")
_MONTH = re.compile(r"^\d{4}-(?:0[1-9]|1[0-2])$")
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?Z$")


def usage_month(text: str) -> Period | None:
    """The month a ``YYYY-MM`` usage period names, or None when `text` is not one."""
    return parse_period(text) if _MONTH.match(text) else None


def utc_timestamp(moment: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ``, the one form ``reviewed_at`` takes."""
    if moment.tzinfo is None:
        raise EvidenceError(f"reviewed_at: {moment.isoformat()} has no time zone; pass UTC")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(text: str) -> datetime | None:
    """The instant of a ``...Z`` UTC timestamp, or None when `text` is not one."""
    if not _TIMESTAMP.match(text):
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class SourceRef:
    """A source the reviewer checked: a known source's id, a URL, or both, and when."""

    source_id: str | None = None
    url: str | None = None
    accessed: date | None = None

    def __post_init__(self) -> None:
        if self.source_id is None and not self.url:
            raise EvidenceError("source_url_checked: each entry needs a source_id or a url")
        if self.source_id is not None:
            check_source_id(self.source_id, "source_url_checked.source_id")

    def to_dict(self) -> dict[str, Any]:
        return {
            "source_id": self.source_id,
            "url": self.url,
            "accessed": None if self.accessed is None else self.accessed.isoformat(),
        }

    @classmethod
    def from_value(cls, value: object) -> SourceRef:
        """From a dict, or from the seed's bare string: a URL, else a source id."""
        where = "source_url_checked"
        if isinstance(value, str):
            is_url = "://" in value
            return cls(source_id=None if is_url else value, url=value if is_url else None)
        data = _mapping(value, where, ("source_id", "url", "accessed"))
        accessed = data.get("accessed")
        if accessed is not None:
            try:
                accessed = date.fromisoformat(_text(accessed, f"{where}.accessed"))
            except ValueError:
                raise EvidenceError(
                    f"{where}.accessed: expected YYYY-MM-DD, got {accessed!r}"
                ) from None
        return cls(
            source_id=_optional_text(data.get("source_id"), f"{where}.source_id"),
            url=_optional_text(data.get("url"), f"{where}.url"),
            accessed=accessed,
        )


@dataclass(frozen=True, slots=True)
class Claim:
    """An external claim the note makes. ``asserted`` states it as fact and needs a source
    that supports it; ``unverified`` records it as an open question for follow-up."""

    kind: str
    text: str
    source_ids: tuple[str, ...] = ()
    status: str = "asserted"

    def __post_init__(self) -> None:
        if self.kind not in CLAIM_KINDS:
            raise EvidenceError(
                f"claims.kind: expected one of {', '.join(CLAIM_KINDS)}, got {self.kind!r}"
            )
        if self.status not in CLAIM_STATUSES:
            raise EvidenceError(
                f"claims.status: expected one of {', '.join(CLAIM_STATUSES)}, got {self.status!r}"
            )
        object.__setattr__(self, "source_ids", tuple(self.source_ids))
        for source_id in self.source_ids:
            check_source_id(source_id, "claims.source_ids")

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "text": self.text,
            "source_ids": list(self.source_ids),
            "status": self.status,
        }

    @classmethod
    def from_value(cls, value: object) -> Claim:
        data = _mapping(value, "claims", ("kind", "text", "source_ids", "status"))
        ids = data.get("source_ids") or []
        if isinstance(ids, str):
            ids = [ids]
        if not isinstance(ids, list):
            raise EvidenceError(f"claims.source_ids: expected a list of ids, got {ids!r}")
        return cls(
            kind=_text(data.get("kind"), "claims.kind"),
            text=_text(data.get("text", ""), "claims.text"),
            source_ids=tuple(_text(i, "claims.source_ids") for i in ids),
            status=_text(data.get("status", "asserted"), "claims.status"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ReviewNote:
    """One row of a chargeback review, for one owner and usage period."""

    review_id: str
    usage_period: str
    team_owner: str | None = None
    allocation_rule: str | None = None
    usage_unit_checked: str | None = None
    source_url_checked: tuple[SourceRef, ...] = ()
    review_result: str | None = None
    follow_up_owner: str | None = None
    reviewed_at: str | None = None
    reviewer_role: str | None = None
    notes: str = ""
    shared: bool = False
    shared_decision: str | None = None  # central | split:<rule name> | held
    claims: tuple[Claim, ...] = ()

    def __post_init__(self) -> None:
        for name in _TEXT_FIELDS:
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise EvidenceError(f"{name}: expected text, got {value!r}")
        if not isinstance(self.notes, str):
            raise EvidenceError(f"notes: expected text, got {self.notes!r}")
        if not isinstance(self.shared, bool):
            raise EvidenceError(f"shared: expected true or false, got {self.shared!r}")
        if self.review_result is not None and self.review_result not in RESULTS:
            raise EvidenceError(
                f"review_result: expected one of {', '.join(RESULTS)}, got {self.review_result!r}"
            )
        object.__setattr__(self, "source_url_checked", tuple(self.source_url_checked))
        object.__setattr__(self, "claims", tuple(self.claims))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, in the seed's field order, then shared, shared_decision and claims."""
        data: dict[str, Any] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name in ("source_url_checked", "claims"):
                value = [entry.to_dict() for entry in value]
            data[item.name] = value
        return data

    @classmethod
    def from_dict(cls, value: object) -> ReviewNote:
        data = _mapping(value, "review note", NOTE_FIELDS)
        for required in ("review_id", "usage_period"):
            if required not in data:
                raise EvidenceError(f"{required}: missing; every note has one")
        refs = data.get("source_url_checked") or []
        if not isinstance(refs, list):
            refs = [refs]
        claims = data.get("claims") or []
        if not isinstance(claims, list):
            raise EvidenceError(f"claims: expected a list, got {claims!r}")
        # Text fields are type-checked by __post_init__, naming the field.
        texts: dict[str, Any] = {name: data.get(name) for name in _TEXT_FIELDS}
        return cls(
            **texts,
            notes=_text(data.get("notes") or "", "notes"),
            shared=data.get("shared", False),
            source_url_checked=tuple(SourceRef.from_value(ref) for ref in refs),
            claims=tuple(Claim.from_value(claim) for claim in claims),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=2)

    @classmethod
    def from_json(cls, text: str) -> ReviewNote:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise EvidenceError(f"review note: not JSON ({exc.msg} at line {exc.lineno})") from None
        return cls.from_dict(data)


NOTE_FIELDS: tuple[str, ...] = tuple(item.name for item in fields(ReviewNote))
_TEXT_FIELDS: tuple[str, ...] = (
    "review_id",
    "usage_period",
    "team_owner",
    "allocation_rule",
    "usage_unit_checked",
    "review_result",
    "follow_up_owner",
    "reviewed_at",
    "reviewer_role",
    "shared_decision",
)


def _mapping(value: object, where: str, allowed: tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise EvidenceError(f"{where}: expected an object, got {value!r}")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise EvidenceError(
            f"{where}: unknown field {unknown[0]!r}; expected some of {', '.join(allowed)}"
        )
    return value


def _text(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise EvidenceError(f"{where}: expected text, got {value!r}")
    return value


def _optional_text(value: object, where: str) -> str | None:
    return None if value is None else _text(value, where)
