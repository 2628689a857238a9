"""Registry versions in the ledger: each loaded registry stored as a versioned document
(``spendtrail.ledger.versions``) with its ``valid_from``, and read back as a
``RegistryHistory``. The audit row lists, per section, the entries added, removed and changed.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, time
from typing import Any

import sqlalchemy as sa

from spendtrail.ledger.db import as_utc
from spendtrail.ledger.schema import registry_versions
from spendtrail.ledger.versions import AuditSides, change_sides, save_document, version_rows
from spendtrail.periods import Period
from spendtrail.registry.changes import SectionChanges, registry_changes
from spendtrail.registry.history import RegistryHistory, RegistryVersion
from spendtrail.registry.model import Registry


def save_version(
    conn: sa.Connection,
    registry: Registry,
    *,
    source_path: str,
    actor: str,
    reason: str = "",
    valid_from: datetime | None = None,
) -> int:
    """Store ``registry`` as a new version and audit it, in the caller's transaction.

    If it equals the latest version, nothing is written and that version's number is
    returned. ``valid_from`` defaults to the registry's ``effective_from``, else now.
    """
    now = datetime.now(UTC)

    def diff(previous: dict[str, Any] | None) -> AuditSides:
        old = None if previous is None else Registry.from_document(previous)
        return _audit_sides(registry_changes(old, registry))

    return save_document(
        conn,
        registry_versions,
        registry.to_document(),
        object_type="registry",
        diff=diff,
        source_path=source_path,
        actor=actor,
        reason=reason,
        columns={"valid_from": as_utc(valid_from or registry.effective_from or now)},
        loaded_at=now,
    )


def _audit_sides(changes: dict[str, SectionChanges]) -> AuditSides:
    """Each section's changes, under ``removed``, ``added`` and ``changed`` by section."""
    removed: dict[str, Any] = {}
    added: dict[str, Any] = {}
    for section, change in changes.items():
        sides = change_sides(change.added, change.removed, change.changed)
        for side, shown in zip((removed, added), sides, strict=True):
            for key, value in shown.items():
                side.setdefault(key, {})[section] = value
    return removed, added


def load_history(conn: sa.Connection) -> RegistryHistory:
    """Every stored registry version."""
    return RegistryHistory(
        RegistryVersion(
            version=row.version,
            valid_from=as_utc(row.valid_from),
            loaded_at=as_utc(row.loaded_at),
            loaded_by=row.loaded_by,
            source_path=row.source_path,
            sha256=row.sha256,
            registry=Registry.from_document(json.loads(row.document)),
        )
        for row in version_rows(conn, registry_versions)
    )


def registry_at_end(conn: sa.Connection, period: Period) -> Registry | None:
    """The registry in force at the end of ``period`` (None: none loaded by then): the one
    a period's statement and allocation name owners by."""
    found = load_history(conn).at(datetime.combine(period.end, time(), UTC))
    return found[1] if found else None
