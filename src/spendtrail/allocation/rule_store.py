"""Shared-cost rule versions in the ledger: which reviewed rules were loaded, by whom and why.

Like registry versions, each load stores the rules as a normalized JSON document with its
sha256; loading rules equal to the latest version stores nothing. Every new version writes
an audit record naming the rules it added, removed and changed (with the changed fields'
before and after values) and the reason given. Where a rule sat in its file (source, line)
is not part of the document, so reformatting or re-commenting a file is no new version.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from fractions import Fraction
from typing import Any

import sqlalchemy as sa

from spendtrail.allocation.rules import Rule
from spendtrail.ledger.audit import record_change
from spendtrail.ledger.schema import shared_cost_rule_versions

OBJECT_TYPE = "shared_cost_rules"


@dataclass(frozen=True, slots=True)
class RulesVersion:
    version: int
    loaded_at: datetime
    loaded_by: str
    source_path: str
    sha256: str
    rules: list[Rule]


def rule_document(rule: Rule) -> dict[str, Any]:
    """One rule as plain JSON values; coefficients keep their exact fractions."""
    return {
        "id": rule.id,
        "pool": rule.pool,
        "method": rule.method,
        "effective_from": rule.effective_from.isoformat(),
        "effective_to": None if rule.effective_to is None else rule.effective_to.isoformat(),
        "reviewed_by": rule.reviewed_by,
        "reviewed_at": rule.reviewed_at.isoformat(),
        "recipients": None if rule.recipients is None else list(rule.recipients),
        "coefficients": None
        if rule.coefficients is None
        else [str(share) for share in rule.coefficients],
        "note": rule.note,
    }


def document_json(rules: Sequence[Rule]) -> str:
    """The canonical JSON that is stored and hashed: equal rules, equal bytes."""
    document = {"rules": [rule_document(rule) for rule in rules]}
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def rules_from_document(document: dict[str, Any], *, source: str) -> list[Rule]:
    rules = []
    for index, item in enumerate(document["rules"]):
        end = item["effective_to"]
        rules.append(Rule(
            id=item["id"],
            pool=item["pool"],
            method=item["method"],
            effective_from=date.fromisoformat(item["effective_from"]),
            effective_to=None if end is None else date.fromisoformat(end),
            reviewed_by=item["reviewed_by"],
            reviewed_at=date.fromisoformat(item["reviewed_at"]),
            recipients=None if item["recipients"] is None else tuple(item["recipients"]),
            coefficients=None
            if item["coefficients"] is None
            else tuple(Fraction(share) for share in item["coefficients"]),
            note=item["note"],
            source=source,
            line=index + 1,  # the rule's position in the stored version
        ))
    return rules


def save_rules_version(
    conn: sa.Connection,
    rules: Sequence[Rule],
    *,
    source_path: str,
    actor: str,
    reason: str = "",
) -> int:
    """Store ``rules`` as a new version and audit it, in the caller's transaction.

    If they equal the latest version, nothing is written and that version's number is
    returned.
    """
    text = document_json(rules)
    digest = hashlib.sha256(text.encode()).hexdigest()
    previous = _latest_row(conn)
    if previous is not None and previous.sha256 == digest:
        return previous.version
    now = datetime.now(UTC)
    result = conn.execute(
        shared_cost_rule_versions.insert().values(
            loaded_at=now,
            loaded_by=actor,
            source_path=source_path,
            sha256=digest,
            document=text,
        )
    )
    version = result.inserted_primary_key[0]
    old = {} if previous is None else {
        item["id"]: item for item in json.loads(previous.document)["rules"]
    }
    new = {item["id"]: item for item in json.loads(text)["rules"]}
    removed, added = _audit_sides(old, new)
    record_change(
        conn,
        actor=actor,
        action="shared_cost_rules.load",
        object_type=OBJECT_TYPE,
        object_id=str(version),
        before=None
        if previous is None
        else {"version": previous.version, "sha256": previous.sha256, "rules": len(old),
              **removed},
        after={"version": version, "sha256": digest, "source_path": source_path,
               "rules": len(new), **added},
        reason=reason,
    )
    return version


def _audit_sides(
    old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """What the audit row's ``before`` and ``after`` each show: rule ids removed and added,
    and per changed rule the fields that changed, old values before and new ones after."""
    removed: dict[str, Any] = {}
    added: dict[str, Any] = {}
    gone = [rule_id for rule_id in old if rule_id not in new]
    fresh = [rule_id for rule_id in new if rule_id not in old]
    if gone:
        removed["removed"] = gone
    if fresh:
        added["added"] = fresh
    for rule_id, item in new.items():
        before = old.get(rule_id)
        if before is None or before == item:
            continue
        fields = sorted(key for key in item.keys() | before.keys()
                        if item.get(key) != before.get(key))
        removed.setdefault("changed", {})[rule_id] = {key: before.get(key) for key in fields}
        added.setdefault("changed", {})[rule_id] = {key: item.get(key) for key in fields}
    return removed, added


def _latest_row(conn: sa.Connection) -> sa.Row | None:
    table = shared_cost_rule_versions
    return conn.execute(sa.select(table).order_by(table.c.version.desc()).limit(1)).first()


def latest_version(conn: sa.Connection) -> RulesVersion | None:
    """The latest stored rules version, or None if rules were never loaded."""
    row = _latest_row(conn)
    if row is None:
        return None
    loaded_at = row.loaded_at
    if loaded_at.tzinfo is None:  # SQLite returns naive UTC
        loaded_at = loaded_at.replace(tzinfo=UTC)
    return RulesVersion(
        version=row.version,
        loaded_at=loaded_at,
        loaded_by=row.loaded_by,
        source_path=row.source_path,
        sha256=row.sha256,
        rules=rules_from_document(
            json.loads(row.document), source=f"shared-cost rules version {row.version}"
        ),
    )


def latest_rules(conn: sa.Connection) -> list[Rule] | None:
    """The rules of the latest stored version, or None if rules were never loaded."""
    found = latest_version(conn)
    return None if found is None else found.rules
