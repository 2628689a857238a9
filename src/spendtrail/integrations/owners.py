"""The owner mapping file of an integration (schema: docs/integrations.md): names the other
tool uses (LiteLLM keys, teams and tags; OpenTelemetry service names) -> allocation fields.

It only fills an event's context; the registry still decides, at ingest, whether the owner
is valid. A name the file does not know leaves the context as captured, so the event is
quarantined as usual rather than dropped. Problems name the file's line, all at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from yaml.nodes import Node

from spendtrail.errors import SpendtrailError
from spendtrail.events.model import OWNER_FIELDS
from spendtrail.yamlfile import Reader

LITELLM_SECTIONS = ("keys", "teams", "tags")
OTEL_SECTIONS = ("services",)


class OwnerMapError(SpendtrailError):
    """An owner mapping file that cannot be used; ``problems`` has each with its line."""


Owner = dict[str, str]  # allocation field -> value


@dataclass(frozen=True, slots=True)
class OwnerMap:
    defaults: Owner = field(default_factory=dict)
    sections: dict[str, dict[str, Owner]] = field(default_factory=dict)
    provider: str | None = None  # LiteLLM: the provider of rows that name none

    def owner(self, section: str, name: str | None) -> Owner | None:
        """The fields mapped for ``name`` in ``section``; None when it is not mapped."""
        if not name:
            return None
        return self.sections.get(section, {}).get(name)


def load_owner_map(path: Path, sections: tuple[str, ...]) -> OwnerMap:
    """Read and check a mapping file whose name sections are ``sections``."""
    reader = Reader(str(path), "the owner mapping", OwnerMapError)
    root = reader.compose(reader.read_file(path))
    allowed = ("defaults", *sections, *(("provider",) if "keys" in sections else ()))
    top = reader.document_keys(root, allowed)
    if top is None:
        raise reader.failure()
    defaults = _owner(reader, top["defaults"], "defaults") if "defaults" in top else {}
    found: dict[str, dict[str, Owner]] = {}
    for section in sections:
        if section not in top:
            continue
        entries = reader.mapping(top[section], section, None) or {}
        found[section] = {
            name: _owner(reader, node, f"{section}.{name}") for name, node in entries.items()
        }
    provider = reader.string(top["provider"], "provider") if "provider" in top else None
    if reader.problems:
        raise reader.failure()
    return OwnerMap(defaults, found, provider)


def _owner(reader: Reader, node: Node, what: str) -> Owner:
    values = reader.mapping(node, what, OWNER_FIELDS) or {}
    owner = {}
    for name, value in values.items():
        text = reader.string(value, f"{what}.{name}")
        if text is not None:
            owner[name] = text.strip()
    return owner
