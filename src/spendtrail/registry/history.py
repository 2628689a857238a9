"""Registry versions over time: which one was in effect when.

Versions are effective-dated like price entries: each is in effect from its ``valid_from``
until the next ``valid_from``; of versions with the same ``valid_from`` the one loaded last
wins, which is how a registry is corrected. Events older than every version are validated
against the version in effect first, so usage captured before the registry was first loaded
is still allocated. The versions are stored by ``spendtrail.ledger.registry_versions``.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

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


class RegistryHistory:
    """Every stored version, answering which one was in effect at a given time."""

    def __init__(self, versions: Iterable[RegistryVersion]) -> None:
        self.versions = tuple(sorted(versions, key=lambda v: v.version))
        self._by_start = sorted(self.versions, key=lambda v: (v.valid_from, v.version))
        self._starts = [v.valid_from for v in self._by_start]

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
