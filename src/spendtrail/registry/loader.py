"""Reading the registry YAML file (schema: docs/registry.md).

The file is composed into YAML nodes rather than loaded into plain data, so every problem can
name its line. All problems are collected and raised together as one ``RegistryError``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any, Literal

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from spendtrail.registry.errors import Problem, RegistryError
from spendtrail.registry.model import SECTIONS, Application, Registry

MAX_ID_LENGTH = 200  # the ledger's owner columns are VARCHAR(200)

_STR = "tag:yaml.org,2002:str"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_NULL = "tag:yaml.org,2002:null"
_BOOL = "tag:yaml.org,2002:bool"
_TAG_KINDS = {
    _NULL: "nothing",
    _BOOL: "true/false",
    "tag:yaml.org,2002:int": "a number",
    "tag:yaml.org,2002:float": "a number",
    _TIMESTAMP: "a date",
}
# Scalars YAML reads as something other than a string, which quoting would fix.
_QUOTABLE = set(_TAG_KINDS) - {_NULL}


@dataclass(frozen=True)
class _Field:
    kind: Literal["id", "text", "ids", "flag"]
    required: bool = True
    refers_to: str | None = None  # the section whose ids the value must name


_ID = _Field("id")
_TEXT = _Field("text")
_OPTIONAL_TEXT = _Field("text", required=False)
_APPLICATION_FIELDS = {
    "id": _ID,
    "name": _TEXT,
    "description": _OPTIONAL_TEXT,
    "business_unit": _Field("id", refers_to="business_units"),
    "cost_center": _Field("id", refers_to="cost_centers"),
    "budget_owner": _Field("id", refers_to="budget_owners"),
    "environments": _Field("ids", refers_to="environments"),
    "workload_classes": _Field("ids", refers_to="workload_classes"),
    "default_environment": _Field("id", required=False),
    "default_workload_class": _Field("id", required=False),
}
FIELDS: dict[str, dict[str, _Field]] = {
    "business_units": {"id": _ID, "name": _TEXT},
    "cost_centers": {
        "id": _ID,
        "name": _TEXT,
        "business_unit": _Field("id", refers_to="business_units"),
    },
    "budget_owners": {"id": _ID, "name": _TEXT, "role": _TEXT, "email": _OPTIONAL_TEXT},
    "environments": {"id": _ID, "description": _OPTIONAL_TEXT,
                     "strict": _Field("flag", required=False)},
    "workload_classes": {"id": _ID, "description": _OPTIONAL_TEXT},
    "applications": _APPLICATION_FIELDS,
    "shared_pool": _APPLICATION_FIELDS,
}
TOP_LEVEL_KEYS = ("effective_from", *SECTIONS, "shared_pool")
_SINGULAR = {
    "business_units": "business unit",
    "cost_centers": "cost center",
    "budget_owners": "budget owner",
    "environments": "environment",
    "workload_classes": "workload class",
    "applications": "application",
    "shared_pool": "shared pool",
}
# Which list an application's default must be a member of.
_DEFAULTS = {
    "default_environment": "environments",
    "default_workload_class": "workload_classes",
}


@dataclass
class _Entry:
    """One parsed entry: its values, and the node of each value for line numbers."""

    section: str
    node: Node
    label: str
    values: dict[str, Any] = field(default_factory=dict)
    nodes: dict[str, Node] = field(default_factory=dict)
    items: dict[str, list[tuple[str, Node]]] = field(default_factory=dict)  # "ids" fields


def load_registry(path: str | Path) -> Registry:
    """Read and validate a registry file; raises ``RegistryError`` listing every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RegistryError(f"{path}: cannot read the registry: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise RegistryError(f"{path}: not UTF-8 text ({exc.reason})") from None
    return parse_registry(text, source=str(path))


def parse_registry(text: str, *, source: str = "<registry>") -> Registry:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        detail = ", ".join(part for part in (exc.context, exc.problem) if part)
        problem = Problem(source, line, f"malformed YAML: {detail}")
        raise RegistryError(str(problem), [problem]) from None
    except yaml.reader.ReaderError as exc:  # a control character: a position, no line
        line = text[: exc.position].count("\n") + 1
        problem = Problem(
            source, line, f"malformed YAML: character #x{exc.character:04x}: {exc.reason}"
        )
        raise RegistryError(str(problem), [problem]) from None
    return _Parser(source).registry(root)


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[Problem] = []

    def problem(self, node: Node | None, message: str) -> None:
        line = node.start_mark.line + 1 if node is not None else 1
        self.problems.append(Problem(self.source, line, message))

    def fail(self) -> RegistryError:
        self.problems.sort(key=lambda problem: problem.line)
        return RegistryError.from_problems(self.source, self.problems)

    def registry(self, root: Node | None) -> Registry:
        if root is None:
            self.problem(
                None,
                "the file is empty; expected a mapping with the keys " + ", ".join(TOP_LEVEL_KEYS),
            )
            raise self.fail()
        top = self.mapping(root, "the registry", TOP_LEVEL_KEYS, TOP_LEVEL_KEYS[1:])
        if top is None:
            raise self.fail()

        effective_from = None
        if "effective_from" in top:
            effective_from = self.timestamp(top["effective_from"], "effective_from")
        sections: dict[str, list[_Entry]] = {}
        for section in SECTIONS:
            entries = self.section(section, top[section]) if section in top else None
            if entries is not None:  # a missing or malformed list is reported once, not per use
                sections[section] = entries
        pool = None
        if "shared_pool" in top:
            pool = self.entry("shared_pool", top["shared_pool"], "shared pool")
        self.cross_check(sections, pool)
        if self.problems:
            raise self.fail()
        assert pool is not None  # a missing shared_pool is a problem, raised above
        return Registry(
            **{
                name: {entry.values["id"]: _build(SECTIONS[name], entry) for entry in entries}
                for name, entries in sections.items()
            },
            shared_pool=_build(Application, pool),
            effective_from=effective_from,
        )

    # --- shapes -----------------------------------------------------------------------------

    def mapping(
        self, node: Node, what: str, allowed: Iterable[str], required: Iterable[str]
    ) -> dict[str, Node] | None:
        """The mapping's values by key; problems for non-strings, duplicates, unknown and
        missing keys."""
        if not isinstance(node, MappingNode):
            self.problem(node, f"{what}: expected a mapping, got {_kind(node)}")
            return None
        allowed = tuple(allowed)
        values: dict[str, Node] = {}
        key_lines: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not (isinstance(key_node, ScalarNode) and key_node.tag == _STR):
                self.problem(key_node, f"{what}: keys must be strings, got {_kind(key_node)}")
                continue
            key = key_node.value
            if key in values:
                self.problem(
                    key_node, f"{what}: duplicate key '{key}' (first on line {key_lines[key]})"
                )
                continue
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f"did you mean '{close[0]}'? " if close else ""
                self.problem(
                    key_node,
                    f"{what}: unknown key '{key}'; {hint}allowed keys: {', '.join(allowed)}",
                )
                continue
            values[key] = value_node
            key_lines[key] = key_node.start_mark.line + 1
        for key in required:
            if key not in values:
                self.problem(node, f"{what}: missing required key '{key}'")
        return values

    def section(self, section: str, node: Node) -> list[_Entry] | None:
        if not isinstance(node, SequenceNode):
            self.problem(node, f"{section}: expected a list of entries, got {_kind(node)}")
            return None
        entries = []
        for index, item in enumerate(node.value):
            entry = self.entry(section, item, f"{section}[{index}]")
            if entry is not None:
                entries.append(entry)
        return entries

    def entry(self, section: str, node: Node, position: str) -> _Entry | None:
        fields = FIELDS[section]
        label = position
        if isinstance(node, MappingNode):  # name the entry by its id when it has a usable one
            for key_node, value_node in node.value:
                if key_node.value == "id" and _is_string(value_node) and value_node.value:
                    label = f"{_SINGULAR[section]} '{value_node.value}'"
        values = self.mapping(
            node, label, fields, [name for name, spec in fields.items() if spec.required]
        )
        if values is None:
            return None
        entry = _Entry(section, node, label)
        for name, value_node in values.items():
            spec = fields[name]
            what = f"{label}: {name}"
            if spec.kind == "ids":
                items = self.id_list(value_node, what)
                if items is not None:
                    entry.items[name] = items
                    entry.values[name] = tuple(value for value, _ in items)
            elif spec.kind == "flag":
                if isinstance(value_node, ScalarNode) and value_node.tag == _BOOL:
                    entry.values[name] = SafeConstructor().construct_object(value_node)
                else:
                    self.problem(value_node, f"{what}: expected true or false, got "
                                 f"{_kind(value_node)}")
            else:
                value = self.string(value_node, what, identifier=spec.kind == "id")
                if value is not None:
                    entry.values[name] = value
            entry.nodes[name] = value_node
        return entry

    def id_list(self, node: Node, what: str) -> list[tuple[str, Node]] | None:
        if not isinstance(node, SequenceNode):
            self.problem(node, f"{what}: expected a list, got {_kind(node)}")
            return None
        if not node.value:
            self.problem(node, f"{what}: must list at least one value")
        items = []
        for item in node.value:
            value = self.string(item, what, identifier=True)
            if value is not None:
                items.append((value, item))
        return items

    def string(self, node: Node, what: str, *, identifier: bool) -> str | None:
        if not _is_string(node):
            hint = (
                " (quote it to make it a string)"
                if isinstance(node, ScalarNode) and node.tag in _QUOTABLE and node.value
                else ""
            )
            self.problem(node, f"{what}: expected a string, got {_kind(node)}{hint}")
            return None
        value: str = node.value
        if not value.strip():
            self.problem(node, f"{what}: must not be empty")
            return None
        if identifier and value != value.strip():
            self.problem(node, f"{what}: '{value}' must not start or end with spaces")
            return None
        if identifier and len(value) > MAX_ID_LENGTH:
            self.problem(node, f"{what}: longer than {MAX_ID_LENGTH} characters")
            return None
        return value

    def timestamp(self, node: Node, what: str) -> datetime | None:
        expected = "expected a date (2026-06-01) or a time with offset (2026-06-01T09:00:00Z)"
        if not (isinstance(node, ScalarNode) and node.tag == _TIMESTAMP):
            self.problem(node, f"{what}: {expected}, got {_kind(node)}")
            return None
        try:
            value = SafeConstructor().construct_object(node)
        except ValueError as exc:
            self.problem(node, f"{what}: not a valid date: {exc}")
            return None
        if not isinstance(value, datetime):
            return datetime.combine(value, time(0), tzinfo=UTC)
        if value.tzinfo is None:
            self.problem(node, f"{what}: a time needs a UTC offset, e.g. {value.isoformat()}Z")
            return None
        return value.astimezone(UTC)

    # --- references -------------------------------------------------------------------------

    def cross_check(self, sections: dict[str, list[_Entry]], pool: _Entry | None) -> None:
        index: dict[str, dict[str, _Entry]] = {}
        for section, entries in sections.items():
            index[section] = {}
            for entry in entries:
                key = entry.values.get("id")
                if key is None:
                    continue
                first = index[section].get(key)
                if first is not None:
                    self.problem(
                        entry.nodes["id"],
                        f"duplicate {_SINGULAR[section]} id '{key}' "
                        f"(first defined on line {_line(first.nodes['id'])})",
                    )
                else:
                    index[section][key] = entry
        entries = [entry for section_entries in sections.values() for entry in section_entries]
        owners = [*sections.get("applications", ())]
        if pool is not None:
            entries.append(pool)
            owners.append(pool)
            clash = index.get("applications", {}).get(pool.values.get("id", ""))
            if clash is not None:
                self.problem(
                    pool.nodes["id"],
                    f"shared pool id '{pool.values['id']}' is also an application id "
                    f"(line {_line(clash.nodes['id'])}); usage naming it would be ambiguous",
                )
        for entry in entries:
            self.check_references(entry, index)
        for entry in owners:
            self.check_owner(entry, index)

    def check_references(self, entry: _Entry, index: dict[str, dict[str, _Entry]]) -> None:
        for name, spec in FIELDS[entry.section].items():
            if spec.refers_to is None or spec.refers_to not in index:
                continue
            known = index[spec.refers_to]
            pairs = entry.items.get(name) or (
                [(entry.values[name], entry.nodes[name])] if name in entry.values else []
            )
            seen: set[str] = set()
            for value, node in pairs:
                if value in seen:
                    self.problem(node, f"{entry.label}: {name} lists '{value}' twice")
                seen.add(value)
                if value not in known:
                    self.problem(
                        node,
                        f"{entry.label}: unknown {_SINGULAR[spec.refers_to]} '{value}'; "
                        f"known: {_known(known)}",
                    )

    def check_owner(self, entry: _Entry, index: dict[str, dict[str, _Entry]]) -> None:
        """An application (or the pool) must be consistent with itself: its cost center
        belongs to its business unit, and its defaults are among its allowed values."""
        cost_center = index.get("cost_centers", {}).get(entry.values.get("cost_center", ""))
        unit = entry.values.get("business_unit")
        if cost_center is not None and unit is not None:
            owner_unit = cost_center.values.get("business_unit")
            if owner_unit is not None and owner_unit != unit:
                self.problem(
                    entry.nodes["cost_center"],
                    f"{entry.label}: cost center '{cost_center.values['id']}' belongs to "
                    f"business unit '{owner_unit}', not to its business unit '{unit}'",
                )
        for name, allowed_name in _DEFAULTS.items():
            value = entry.values.get(name)
            allowed = entry.values.get(allowed_name)
            if value is not None and allowed is not None and value not in allowed:
                self.problem(
                    entry.nodes[name],
                    f"{entry.label}: {name} '{value}' is not one of its {allowed_name} "
                    f"({', '.join(allowed)})",
                )


def _build(entry_type: type, entry: _Entry) -> Any:
    values = {
        name: tuple(sorted(value)) if isinstance(value, tuple) else value
        for name, value in entry.values.items()
    }
    return entry_type(**values)


def _is_string(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == _STR


def _kind(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if node.tag == _STR:
        return f"the string '{node.value}'"
    kind = _TAG_KINDS.get(node.tag, f"a value tagged {node.tag}")
    return f"{kind} ({node.value})" if node.value else kind


def _line(node: Node) -> int:
    return node.start_mark.line + 1


def _known(known: dict[str, _Entry], limit: int = 12) -> str:
    names = sorted(known)
    if not names:
        return "none"
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")
