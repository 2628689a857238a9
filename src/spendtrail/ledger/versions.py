"""Versioned documents in the ledger: one store for each reviewed document that is loaded
whole and kept as numbered versions (the owner registry in ``registry_versions``, the
shared-cost rules in ``shared_cost_rule_versions``).

A version is the document as canonical JSON with its sha256: equal documents, equal bytes, so
saving a document equal to the latest version writes nothing. A new version and its audit row
are written in the caller's transaction; the row names the versions before and after (number,
sha256, the table's further columns such as ``valid_from``) and what changed, as the caller's
diff says.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from spendtrail.ledger.audit import record_change
from spendtrail.ledger.db import as_utc

# What the audit row's ``before`` and ``after`` add to the version numbers and hashes.
AuditSides = tuple[dict[str, Any], dict[str, Any]]


def canonical_json(document: Any) -> str:
    """The JSON that is stored and hashed: equal documents, equal bytes."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def save_document(
    conn: sa.Connection,
    table: sa.Table,
    document: Any,
    *,
    object_type: str,
    diff: Callable[[Any | None], AuditSides],
    source_path: str,
    actor: str,
    reason: str = "",
    columns: Mapping[str, Any] | None = None,
    loaded_at: datetime | None = None,
) -> int:
    """Store ``document`` in ``table`` as a new version and audit it (``<object_type>.load``).

    If it equals the latest version, nothing is written and that version's number is
    returned. ``columns`` are the table's further values, shown on both sides of the audit
    row; ``diff`` gets the previous version's document (None for the first) and gives the
    sides' changes.
    """
    text = canonical_json(document)
    digest = hashlib.sha256(text.encode()).hexdigest()
    previous = latest_row(conn, table)
    if previous is not None and previous.sha256 == digest:
        return previous.version
    columns = dict(columns or {})
    result = conn.execute(
        table.insert().values(
            loaded_at=loaded_at or datetime.now(UTC),
            loaded_by=actor,
            source_path=source_path,
            sha256=digest,
            document=text,
            **columns,
        )
    )
    version = result.inserted_primary_key[0]
    removed, added = diff(None if previous is None else json.loads(previous.document))
    record_change(
        conn,
        actor=actor,
        action=f"{object_type}.load",
        object_type=object_type,
        object_id=str(version),
        before=None
        if previous is None
        else {
            "version": previous.version,
            "sha256": previous.sha256,
            **{name: _shown(getattr(previous, name)) for name in columns},
            **removed,
        },
        after={
            "version": version,
            "sha256": digest,
            "source_path": source_path,
            **{name: _shown(value) for name, value in columns.items()},
            **added,
        },
        reason=reason,
    )
    return version


def _shown(value: Any) -> Any:
    return as_utc(value).isoformat() if isinstance(value, datetime) else value


def latest_row(conn: sa.Connection, table: sa.Table) -> sa.Row | None:
    """The row of the latest version, or None if nothing was ever stored."""
    return conn.execute(sa.select(table).order_by(table.c.version.desc()).limit(1)).first()


def version_rows(conn: sa.Connection, table: sa.Table) -> Iterable[sa.Row]:
    """Every version's row, oldest first."""
    return conn.execute(sa.select(table).order_by(table.c.version))


def change_sides(
    added: Iterable[str],
    removed: Iterable[str],
    changed: Mapping[str, Mapping[str, tuple[Any, Any]]],
) -> AuditSides:
    """Changes split for the audit row: ``before`` names the ids removed and the old values of
    changed fields, ``after`` the ids added and the new values. ``changed`` maps an id to
    its changed fields, each to (old, new)."""
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    if removed := list(removed):
        before["removed"] = removed
    if added := list(added):
        after["added"] = added
    if changed:
        before["changed"] = {key: {name: old for name, (old, _) in diff.items()}
                             for key, diff in changed.items()}
        after["changed"] = {key: {name: new for name, (_, new) in diff.items()}
                            for key, diff in changed.items()}
    return before, after
