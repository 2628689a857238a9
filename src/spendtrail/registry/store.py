"""Registry versions in the ledger: what was valid when.

Versions are effective-dated like price entries: each is in effect from its ``valid_from``
until the next ``valid_from``; of versions with the same ``valid_from`` the one loaded last
wins, which is how a registry is corrected. Events older than every version are validated
against the version in effect first, so usage captured before the registry was first loaded
is still allocated.
"""

from __future__ import annotations

import hashlib
import json
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from spendtrail.ledger.audit import record_change
from spendtrail.ledger.schema import registry_versions
from spendtrail.registry.changes import SectionChanges, registry_changes
from spendtrail.registry.model import Registry


@dataclass(frozen=True, slots=True)
class RegistryVersion:
    version: int
    valid_from: datetime
    loaded_at: datetime
    loaded_by: str
    source_path: str
    sha256: str
    registry: Registry


def document_json(registry: Registry) -> str:
    """The canonical JSON that is stored and hashed: equal registries, equal bytes."""
    return json.dumps(
        registry.to_document(), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


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
    text = document_json(registry)
    digest = hashlib.sha256(text.encode()).hexdigest()
    previous = conn.execute(
        sa.select(registry_versions).order_by(registry_versions.c.version.desc()).limit(1)
    ).first()
    if previous is not None and previous.sha256 == digest:
        return previous.version
    now = datetime.now(UTC)
    start = _utc(valid_from or registry.effective_from or now)
    result = conn.execute(
        registry_versions.insert().values(
            valid_from=start,
            loaded_at=now,
            loaded_by=actor,
            source_path=source_path,
            sha256=digest,
            document=text,
        )
    )
    version = result.inserted_primary_key[0]
    old = None if previous is None else Registry.from_document(json.loads(previous.document))
    removed, added = _audit_sides(registry_changes(old, registry))
    record_change(
        conn,
        actor=actor,
        action="registry.load",
        object_type="registry",
        object_id=str(version),
        before=None
        if previous is None
        else {
            "version": previous.version,
            "valid_from": _utc(previous.valid_from).isoformat(),
            "sha256": previous.sha256,
            **removed,
        },
        after={
            "version": version,
            "valid_from": start.isoformat(),
            "sha256": digest,
            "source_path": source_path,
            **added,
        },
        reason=reason,
    )
    return version


def _audit_sides(changes: dict[str, SectionChanges]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split changes into what the audit row's ``before`` and ``after`` each show."""
    removed: dict[str, Any] = {}
    added: dict[str, Any] = {}
    for section, change in changes.items():
        if change.removed:
            removed.setdefault("removed", {})[section] = list(change.removed)
        if change.added:
            added.setdefault("added", {})[section] = list(change.added)
        for key, diff in change.changed.items():
            removed.setdefault("changed", {}).setdefault(section, {})[key] = {
                name: old for name, (old, _) in diff.items()
            }
            added.setdefault("changed", {}).setdefault(section, {})[key] = {
                name: new for name, (_, new) in diff.items()
            }
    return removed, added


class RegistryHistory:
    """Every stored version, answering which one was in effect at a given time."""

    def __init__(self, versions: Iterable[RegistryVersion]) -> None:
        self.versions = tuple(sorted(versions, key=lambda v: v.version))
        self._by_start = sorted(self.versions, key=lambda v: (v.valid_from, v.version))
        self._starts = [v.valid_from for v in self._by_start]

    @classmethod
    def load(cls, conn: sa.Connection) -> RegistryHistory:
        rows = conn.execute(sa.select(registry_versions).order_by(registry_versions.c.version))
        return cls(
            RegistryVersion(
                version=row.version,
                valid_from=_utc(row.valid_from),
                loaded_at=_utc(row.loaded_at),
                loaded_by=row.loaded_by,
                source_path=row.source_path,
                sha256=row.sha256,
                registry=Registry.from_document(json.loads(row.document)),
            )
            for row in rows
        )

    def version_at(self, when: datetime) -> RegistryVersion | None:
        """The version in effect at ``when`` (timezone-aware)."""
        if not self._starts:
            return None
        index = bisect_right(self._starts, when)
        if index == 0:  # before every version: the one in effect at the earliest start
            index = bisect_right(self._starts, self._starts[0])
        return self._by_start[index - 1]

    def at(self, when: datetime) -> tuple[int, Registry] | None:
        found = self.version_at(when)
        return None if found is None else (found.version, found.registry)

    def latest(self) -> tuple[int, Registry] | None:
        """The version loaded last, whether or not it is in effect yet."""
        if not self.versions:
            return None
        return self.versions[-1].version, self.versions[-1].registry

    def get(self, version: int) -> RegistryVersion | None:
        return next((v for v in self.versions if v.version == version), None)


def _utc(value: datetime) -> datetime:
    # SQLite hands timestamps back without an offset; they were written in UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
