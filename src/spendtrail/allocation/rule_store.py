"""Shared-cost rule versions in the ledger: which reviewed rules were loaded, by whom and why.

Like registry versions, each load stores the rules as a versioned document
(``spendtrail.ledger.versions``): normalized JSON with its sha256; loading rules equal to the
latest version stores nothing. Every new version writes an audit record naming the rules it
added, removed and changed (with the changed fields' before and after values) and the reason
given. Where a rule sat in its file (source, line) is not part of the document, so
reformatting or re-commenting a file is no new version.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from fractions import Fraction
from typing import Any

import sqlalchemy as sa

from spendtrail.allocation.rules import Rule
from spendtrail.ledger.db import as_utc
from spendtrail.ledger.schema import shared_cost_rule_versions
from spendtrail.ledger.versions import AuditSides, change_sides, latest_row, save_document

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
    document = {"rules": [rule_document(rule) for rule in rules]}
    return save_document(
        conn,
        shared_cost_rule_versions,
        document,
        object_type=OBJECT_TYPE,
        diff=lambda previous: _audit_sides(previous, document),
        source_path=source_path,
        actor=actor,
        reason=reason,
    )


def _audit_sides(previous: dict[str, Any] | None, document: dict[str, Any]) -> AuditSides:
    """The rule ids removed and added, per changed rule the fields that changed, and how many
    rules each version holds."""
    old = {} if previous is None else {item["id"]: item for item in previous["rules"]}
    new = {item["id"]: item for item in document["rules"]}
    changed = {
        rule_id: {key: (before.get(key), item.get(key))
                  for key in sorted(item.keys() | before.keys())
                  if item.get(key) != before.get(key)}
        for rule_id, item in new.items()
        if (before := old.get(rule_id)) is not None and before != item
    }
    removed, added = change_sides(
        [rule_id for rule_id in new if rule_id not in old],
        [rule_id for rule_id in old if rule_id not in new],
        changed,
    )
    return {"rules": len(old), **removed}, {"rules": len(new), **added}


def latest_version(conn: sa.Connection) -> RulesVersion | None:
    """The latest stored rules version, or None if rules were never loaded."""
    return _version(latest_row(conn, shared_cost_rule_versions))


def stored_version(conn: sa.Connection, version: int) -> RulesVersion | None:
    """Stored rules version ``version``, or None if there is none of that number."""
    t = shared_cost_rule_versions
    return _version(conn.execute(sa.select(t).where(t.c.version == version)).first())


def _version(row: sa.Row | None) -> RulesVersion | None:
    if row is None:
        return None
    return RulesVersion(
        version=row.version,
        loaded_at=as_utc(row.loaded_at),
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
