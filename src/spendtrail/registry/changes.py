"""What changed between two registries, entry by entry: for the audit log and the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from spendtrail.registry.model import SECTIONS, Registry


@dataclass(frozen=True)
class SectionChanges:
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: dict[str, dict[str, tuple[Any, Any]]] = field(default_factory=dict)
    """Entry id -> field -> (old value, new value); None where the field was unset."""


def registry_changes(old: Registry | None, new: Registry) -> dict[str, SectionChanges]:
    """Changes per section (``shared_pool`` and ``provider_accounts`` included); unchanged
    sections are left out. A provider account is named ``provider kind account``."""
    old_document = old.to_document() if old is not None else {}
    new_document = new.to_document()
    result: dict[str, SectionChanges] = {}
    for section in (*SECTIONS, "shared_pool", "provider_accounts"):
        before = _by_id(old_document.get(section))
        after = _by_id(new_document.get(section))
        changed = {
            key: {
                name: (before[key].get(name), after[key].get(name))
                for name in sorted(before[key].keys() | after[key].keys())
                if before[key].get(name) != after[key].get(name)
            }
            for key in sorted(before.keys() & after.keys())
            if before[key] != after[key]
        }
        added = tuple(sorted(after.keys() - before.keys()))
        removed = tuple(sorted(before.keys() - after.keys()))
        if added or removed or changed:
            result[section] = SectionChanges(added, removed, changed)
    return result


def _by_id(entries: list[dict[str, Any]] | dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    if entries is None:
        return {}
    if isinstance(entries, dict):  # the shared pool is one entry, not a list
        entries = [entries]
    return {
        entry["id"] if "id" in entry else f"{entry['provider']} {entry['kind']} {entry['account']}":
        entry
        for entry in entries
    }
