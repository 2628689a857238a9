"""Reading a reviewed YAML file as nodes, so every problem can name its line.

The same approach as ``spendtrail.registry.loader`` (which keeps its own richer checks):
compose instead of load, collect every problem, raise them together.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from spendtrail.registry.errors import Problem

STR = "tag:yaml.org,2002:str"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_KINDS = {
    "tag:yaml.org,2002:null": "nothing",
    "tag:yaml.org,2002:bool": "true/false",
    "tag:yaml.org,2002:int": "a number",
    "tag:yaml.org,2002:float": "a number",
    _TIMESTAMP: "a date",
}


def line(node: Node | None) -> int:
    return node.start_mark.line + 1 if node is not None else 1


def kind(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if node.tag == STR:
        return f"the string '{node.value}'"
    return _KINDS.get(node.tag, f"a value tagged {node.tag}")


class NodeReader:
    """Typed reads of nodes; each failed read adds a problem and returns None."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[Problem] = []

    def problem(self, node: Node | None, message: str) -> None:
        self.problems.append(Problem(self.source, line(node), message))

    def compose(self, text: str) -> Node | None:
        try:
            return yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            detail = ", ".join(part for part in (exc.context, exc.problem) if part)
            self.problems.append(
                Problem(self.source, mark.line + 1 if mark else 1, f"malformed YAML: {detail}")
            )
        except yaml.reader.ReaderError as exc:
            at = text[: exc.position].count("\n") + 1
            self.problems.append(Problem(self.source, at, f"malformed YAML: {exc.reason}"))
        return None

    def mapping(
        self,
        node: Node,
        what: str,
        allowed: Iterable[str] | None,
        required: Iterable[str] = (),
    ) -> dict[str, Node] | None:
        """The mapping's values by key; ``allowed`` None takes any non-empty string key."""
        if not isinstance(node, MappingNode):
            self.problem(node, f"{what}: expected a mapping, got {kind(node)}")
            return None
        names = None if allowed is None else tuple(allowed)
        values: dict[str, Node] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, ScalarNode) else None
            if key_node.tag != STR or not key:
                self.problem(key_node, f"{what}: keys must be non-empty strings, got "
                             f"{kind(key_node)}")
            elif names is not None and key not in names:
                self.problem(key_node, f"{what}: unknown key '{key}'; allowed: "
                             f"{', '.join(names)}")
            elif key in values:
                self.problem(key_node, f"{what}: duplicate key '{key}'")
            else:
                values[key] = value_node
        for key in required:
            if key not in values:
                self.problem(node, f"{what}: missing required key '{key}'")
        return values

    def sequence(self, node: Node, what: str) -> list[Node] | None:
        if not isinstance(node, SequenceNode):
            self.problem(node, f"{what}: expected a list, got {kind(node)}")
            return None
        return list(node.value)

    def string(self, node: Node, what: str) -> str | None:
        if node.tag != STR or not isinstance(node, ScalarNode) or not node.value.strip():
            self.problem(node, f"{what}: expected a non-empty string, got {kind(node)}")
            return None
        return node.value

    def day(self, node: Node, what: str) -> date | None:
        if node.tag != _TIMESTAMP:
            self.problem(node, f"{what}: expected a date such as 2026-10-01, got {kind(node)}")
            return None
        try:
            value = SafeConstructor().construct_object(node)
        except ValueError as exc:
            self.problem(node, f"{what}: not a valid date: {exc}")
            return None
        if isinstance(value, datetime):
            self.problem(node, f"{what}: expected a date without a time, got {node.value}")
            return None
        return value
