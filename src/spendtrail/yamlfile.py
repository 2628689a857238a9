"""Reading a reviewed YAML file, so that every problem names its line.

The text is composed into YAML nodes rather than loaded into plain data: each node keeps its
line, and numbers are read from their text, never through float. A ``Reader``'s typed reads
check one node each; a failed read records a ``Problem`` and returns None, so one run finds
every problem, and ``Reader.failure()`` raises them together in line order. The registry, the
price sheet, the shared-cost rules, bill column mappings and unit metrics read their files
through it and keep only their own field rules.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from pathlib import Path

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from spendtrail.errors import Problem, SpendtrailError

STR = "tag:yaml.org,2002:str"
NULL = "tag:yaml.org,2002:null"
BOOL = "tag:yaml.org,2002:bool"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_KINDS = {
    NULL: "nothing",
    BOOL: "true/false",
    "tag:yaml.org,2002:int": "a number",
    "tag:yaml.org,2002:float": "a number",
    _TIMESTAMP: "a date",
}
_NUMBERS = {STR, "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"}
# Scalars YAML reads as something other than a string, which quoting would fix.
_QUOTABLE = set(_KINDS) - {NULL}


def line(node: Node | None) -> int:
    """The 1-based line a node starts on; 1 for the document as a whole."""
    return node.start_mark.line + 1 if node is not None else 1


def kind(node: Node) -> str:
    """What a node is, for "expected X, got Y" messages."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if node.tag == STR:
        return f"the string '{node.value}'"
    name = _KINDS.get(node.tag, f"a value tagged {node.tag}")
    return f"{name} ({node.value})" if node.value else name


def is_string(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == STR


def is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == NULL


def key_node(node: MappingNode, key: str) -> Node:
    """The key node of ``key`` in a mapping, for a problem about the key's whole value."""
    return next(k for k, _ in node.value if isinstance(k, ScalarNode) and k.value == key)


def named(node: Node, fallback: str, noun: str) -> str:
    """How messages name a list entry: ``noun 'its id'`` when it has a usable id."""
    if isinstance(node, MappingNode):
        for key, value in node.value:
            if key.value == "id" and is_string(value) and value.value.strip():
                return f"{noun} '{value.value}'"
    return fallback


class Reader:
    """Typed reads of one YAML document's nodes; each failed read records a problem.

    ``document`` names the file in messages ("the registry"), ``error`` is what
    ``failure()`` and an unreadable file raise."""

    def __init__(
        self, source: str, document: str, error: type[SpendtrailError] = SpendtrailError
    ) -> None:
        self.source = source
        self.document = document
        self.error = error
        self.problems: list[Problem] = []

    def problem(self, node: Node | None, message: str) -> None:
        self.problems.append(Problem(self.source, line(node), message))

    def failure(self) -> SpendtrailError:
        """Every problem recorded, as one error listing them in line order."""
        return self.error.from_problems(self.problems, self.document)

    def read_file(self, path: Path) -> str:
        """The file's text; raises at once when it cannot be read."""
        try:
            return path.read_bytes().decode("utf-8")
        except OSError as exc:
            message = f"cannot read {self.document}: {exc.strerror}"
        except UnicodeDecodeError as exc:
            message = f"not UTF-8 text ({exc.reason})"
        problem = Problem(self.source, 0, message)
        raise self.error(str(problem), [problem]) from None

    def compose(self, text: str) -> Node | None:
        """The document's root node; None when it is empty or malformed (a problem)."""
        try:
            return yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            detail = ", ".join(part for part in (exc.context, exc.problem) if part)
            at = mark.line + 1 if mark else 1
            self.problems.append(Problem(self.source, at, f"malformed YAML: {detail}"))
        except yaml.reader.ReaderError as exc:  # a control character: a position, no line
            at = text[: exc.position].count("\n") + 1
            message = f"malformed YAML: character #x{exc.character:04x}: {exc.reason}"
            self.problems.append(Problem(self.source, at, message))
        return None

    def document_keys(
        self, root: Node | None, allowed: Iterable[str], required: Iterable[str] = ()
    ) -> dict[str, Node] | None:
        """The top-level mapping of a composed document (``root``), as ``mapping`` reads it."""
        allowed = tuple(allowed)
        if root is None:
            if not self.problems:  # not malformed: empty, or only comments
                keys = (
                    f"the key '{allowed[0]}'"
                    if len(allowed) == 1
                    else ("the keys " + ", ".join(allowed))
                )
                self.problem(None, f"the file is empty; expected a mapping with {keys}")
            return None
        return self.mapping(root, self.document, allowed, required)

    def mapping(
        self,
        node: Node,
        what: str,
        allowed: Iterable[str] | None,
        required: Iterable[str] = (),
    ) -> dict[str, Node] | None:
        """The mapping's value nodes by key. Keys must be strings, appear once and, unless
        ``allowed`` is None, be among ``allowed`` (an unknown key gets a suggestion)."""
        if not isinstance(node, MappingNode):
            self.problem(node, f"{what}: expected a mapping, got {kind(node)}")
            return None
        names = None if allowed is None else tuple(allowed)
        values: dict[str, Node] = {}
        key_lines: dict[str, int] = {}
        for key, value in node.value:
            if not is_string(key):
                hint = _quote_hint(key)
                self.problem(key, f"{what}: keys must be strings, got {kind(key)}{hint}")
            elif not key.value.strip():
                self.problem(key, f"{what}: keys must not be empty")
            elif key.value in values:
                self.problem(
                    key,
                    f"{what}: duplicate key '{key.value}' (first on line {key_lines[key.value]})",
                )
            elif names is not None and key.value not in names:
                close = difflib.get_close_matches(key.value, names, n=1)
                hint = f"did you mean '{close[0]}'? " if close else ""
                self.problem(
                    key,
                    f"{what}: unknown key '{key.value}'; {hint}allowed keys: {', '.join(names)}",
                )
            else:
                values[key.value] = value
                key_lines[key.value] = line(key)
        for name in required:
            if name not in values:
                self.problem(node, f"{what}: missing required key '{name}'")
        return values

    def sequence(self, node: Node, what: str, of: str = "") -> list[Node] | None:
        """The list's item nodes; ``of`` says what the items are ("entries")."""
        if not isinstance(node, SequenceNode):
            expected = f"a list of {of}" if of else "a list"
            self.problem(node, f"{what}: expected {expected}, got {kind(node)}")
            return None
        return list(node.value)

    def string(self, node: Node, what: str) -> str | None:
        """A non-blank YAML string; a number, date or true/false is told to be quoted."""
        if not is_string(node):
            self.problem(node, f"{what}: expected a string, got {kind(node)}{_quote_hint(node)}")
            return None
        if not node.value.strip():
            self.problem(node, f"{what}: must not be empty")
            return None
        return node.value

    def flag(self, node: Node, what: str) -> bool | None:
        """A YAML true or false."""
        if not (isinstance(node, ScalarNode) and node.tag == BOOL):
            self.problem(node, f"{what}: expected true or false, got {kind(node)}")
            return None
        return SafeConstructor.bool_values[node.value.lower()]

    def text(self, node: Node, what: str) -> str | None:
        """The stripped text of any non-blank scalar, for fields with their own syntax."""
        if not isinstance(node, ScalarNode) or node.tag == NULL or not node.value.strip():
            self.problem(node, f"{what}: expected a value, got {kind(node)}")
            return None
        return node.value.strip()

    def decimal(self, node: Node, what: str, expected: str = "a decimal number") -> Decimal | None:
        """A finite number read from its text, exactly as written (never through float)."""
        number = None
        if isinstance(node, ScalarNode) and node.tag in _NUMBERS:
            try:
                number = Decimal(node.value.strip())
            except InvalidOperation:
                pass
        if number is None or not number.is_finite():
            self.problem(node, f"{what}: expected {expected}, got {kind(node)}")
            return None
        return number

    def day(self, node: Node, what: str) -> date | None:
        """A date without a time (2026-10-01)."""
        value = self._timestamp(node, what, "a date such as 2026-10-01")
        if isinstance(value, datetime):
            self.problem(node, f"{what}: expected a date without a time, got {node.value}")
            return None
        return value

    def instant(self, node: Node, what: str) -> datetime | None:
        """A date (00:00 UTC) or a time with a UTC offset, as an aware UTC datetime."""
        expected = "a date (2026-06-01) or a time with offset (2026-06-01T09:00:00Z)"
        value = self._timestamp(node, what, expected)
        if value is None:
            return None
        if not isinstance(value, datetime):
            return datetime.combine(value, time(0), tzinfo=UTC)
        if value.tzinfo is None:
            self.problem(node, f"{what}: a time needs a UTC offset, e.g. {value.isoformat()}Z")
            return None
        return value.astimezone(UTC)

    def _timestamp(self, node: Node, what: str, expected: str) -> date | datetime | None:
        if not (isinstance(node, ScalarNode) and node.tag == _TIMESTAMP):
            self.problem(node, f"{what}: expected {expected}, got {kind(node)}")
            return None
        try:
            value: date | datetime = SafeConstructor().construct_object(node)
        except ValueError as exc:
            self.problem(node, f"{what}: not a valid date: {exc}")
            return None
        return value


def _quote_hint(node: Node) -> str:
    if isinstance(node, ScalarNode) and node.tag in _QUOTABLE and node.value:
        return " (quote it to make it a string)"
    return ""
