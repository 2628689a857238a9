"""The YAML price sheet: the account's own verified prices (schema: docs/prices.md).

The file is composed into YAML nodes rather than loaded into plain data, so numbers are read
from their text (never through float) and every problem names its line. All problems are
collected and raised together as one ``SheetError``; a sheet is applied whole or not at all.
"""

from __future__ import annotations

import difflib
import hashlib
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from spendtrail.errors import SpendtrailError
from spendtrail.pricing.model import (
    MATCH_KINDS,
    PriceEntry,
    Tier,
    check_price,
    check_regex_case,
    parse_day,
    parse_instant,
)

_NULL = "tag:yaml.org,2002:null"
# Fields an entry may set, and which of them `defaults` may set for every entry.
ENTRY_FIELDS = (
    "id", "provider", "model", "match", "kind", "currency", "prices", "tiers",
    "effective_from", "effective_to", "source_url", "source_id", "checked_at", "checked_by",
)
DEFAULTABLE = (
    "provider", "match", "kind", "currency", "effective_from", "effective_to", "source_url",
    "checked_at", "checked_by",
)
PROVENANCE = ("source_url", "checked_at", "checked_by")
REQUIRED = ("provider", "model", "prices", "effective_from", *PROVENANCE)
DEFAULT_KIND = "contracted"  # a sheet holds the account's own prices


class SheetError(SpendtrailError):
    """A price sheet that cannot be used; ``problems`` has one FILE:LINE line per problem."""

    def __init__(self, problems: list[str], source: str) -> None:
        lines = list(problems)
        if len(lines) > 1:
            lines.insert(0, f"{source}: {len(lines)} problems in the price sheet")
        super().__init__("\n".join(lines))
        self.problems = tuple(problems)


class _Problem(Exception):
    def __init__(self, node: Node, message: str) -> None:
        super().__init__(message)
        self.line = node.start_mark.line + 1


def load_sheet(path: Path) -> list[PriceEntry]:
    """Read and check a price sheet; raises SheetError listing every problem."""
    source = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        message = f"{source}: cannot read the price sheet: {exc.strerror}"
        raise SheetError([message], source) from None
    try:
        root = yaml.compose(data.decode("utf-8"), Loader=yaml.SafeLoader)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise SheetError([f"{source}{line}: not valid YAML: {exc}"], source) from None
    origin = f"sheet {path.name} sha256:{hashlib.sha256(data).hexdigest()[:12]}"
    return _Reader(source, origin).read(root)


class _Reader:
    def __init__(self, source: str, origin: str) -> None:
        self.source = source
        self.origin = origin
        self.problems: list[str] = []

    def problem(self, line: int, message: str) -> None:
        self.problems.append(f"{self.source}:{line}: {message}")

    def read(self, root: Node | None) -> list[PriceEntry]:
        if root is None:
            raise SheetError([f"{self.source}:1: the price sheet is empty"], self.source)
        if not isinstance(root, MappingNode):
            raise SheetError([f"{self.source}:1: expected a mapping with 'prices:'"], self.source)
        top = self.mapping(root, ("defaults", "prices"), "sheet")
        defaults: dict[str, tuple[Node, Node]] = {}
        if "defaults" in top:
            defaults = self.mapping(top["defaults"][1], DEFAULTABLE, "defaults")
        items: list[Node] = []
        if "prices" not in top:
            self.problem(1, "prices: missing; list the price entries under 'prices:'")
        elif not isinstance(top["prices"][1], SequenceNode):
            self.problem(top["prices"][1].start_mark.line + 1, "prices: expected a list")
        else:
            items = top["prices"][1].value
        entries: list[tuple[int, PriceEntry]] = []
        for item in items:
            entry = self.entry(item, defaults)
            if entry is not None:
                entries.append((item.start_mark.line + 1, entry))
        self.check_overlaps(entries)
        if self.problems:
            raise SheetError(self.problems, self.source)
        return [entry for _, entry in entries]

    def mapping(
        self, node: Node, allowed: tuple[str, ...], where: str
    ) -> dict[str, tuple[Node, Node]]:
        if not isinstance(node, MappingNode):
            self.problem(node.start_mark.line + 1, f"{where}: expected a mapping")
            return {}
        fields: dict[str, tuple[Node, Node]] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, ScalarNode) else str(key)
            if name not in allowed:
                close = difflib.get_close_matches(name, allowed, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                self.problem(key.start_mark.line + 1, f"{where}: unknown field {name!r}{hint}")
            elif name in fields:
                self.problem(key.start_mark.line + 1, f"{where}: {name} is given twice")
            else:
                fields[name] = (key, value)
        return fields

    def entry(self, node: Node, defaults: dict[str, tuple[Node, Node]]) -> PriceEntry | None:
        line = node.start_mark.line + 1
        count = len(self.problems)
        if not isinstance(node, MappingNode):
            self.problem(line, "price entry: expected a mapping of fields")
            return None
        fields = {**defaults, **self.mapping(node, ENTRY_FIELDS, "price entry")}
        for name in REQUIRED:
            if name not in fields:
                why = " (every price carries its provenance)" if name in PROVENANCE else ""
                self.problem(line, f"{name}: missing{why}")
        if len(self.problems) > count:
            return None
        values: dict[str, Any] = {}
        for name, (_, value) in fields.items():
            try:
                values[name] = self.value(name, value)
            except _Problem as exc:
                self.problem(exc.line, str(exc))
            except SpendtrailError as exc:
                self.problem(value.start_mark.line + 1, str(exc))
        if values.get("match") == "regex" and "model" in values:
            try:
                check_regex_case(values["model"])
            except SpendtrailError as exc:
                self.problem(fields["model"][1].start_mark.line + 1, str(exc))
        if len(self.problems) > count:
            return None
        try:
            return PriceEntry(
                id=values.get("id", ""),
                provider=values["provider"],
                model_match=values["model"],
                match_kind=values.get("match", "exact"),
                kind=values.get("kind", DEFAULT_KIND),
                currency=values.get("currency", "USD"),
                prices=values["prices"],
                tiers=values.get("tiers", ()),
                effective_from=values["effective_from"],
                effective_to=values.get("effective_to"),
                source_url=values["source_url"],
                source_id=values.get("source_id"),
                checked_at=values["checked_at"],
                checked_by=values["checked_by"],
                origin=self.origin,
            )
        except SpendtrailError as exc:
            self.problem(line, str(exc))
            return None

    def value(self, name: str, node: Node) -> Any:
        if name == "prices":
            return self.prices(node, name)
        if name == "tiers":
            return self.tiers(node)
        if name == "effective_to" and node.tag == _NULL:
            return None
        text = self.text(node, name)
        if name in ("effective_from", "effective_to"):
            return parse_instant(text, name)
        if name == "checked_at":
            return parse_day(text, name)
        if name == "match" and text not in MATCH_KINDS:
            raise _Problem(node, f"match: expected one of {', '.join(MATCH_KINDS)}, got {text!r}")
        return text

    def text(self, node: Node, name: str) -> str:
        if not isinstance(node, ScalarNode) or node.tag == _NULL or not node.value.strip():
            raise _Problem(node, f"{name}: expected a value")
        return node.value.strip()

    def prices(self, node: Node, where: str) -> dict[str, Any]:
        if not isinstance(node, MappingNode) or not node.value:
            raise _Problem(node, "expected a mapping of meter: price")
        prices = {}
        for key, value in node.value:
            meter = key.value
            if not isinstance(value, ScalarNode) or value.tag == _NULL:
                raise _Problem(value, f"{where}.{meter}: expected a number")
            try:
                prices[meter] = check_price(meter, value.value, f"{where}.{meter}")
            except SpendtrailError as exc:
                raise _Problem(key if "unknown meter" in str(exc) else value, str(exc)) from None
        return prices

    def tiers(self, node: Node) -> tuple[Tier, ...]:
        if not isinstance(node, SequenceNode):
            raise _Problem(node, "expected a list of {above_input_tokens, prices}")
        tiers = []
        for i, item in enumerate(node.value):
            where = f"tiers[{i}]"
            fields = self.mapping(item, ("above_input_tokens", "prices"), where)
            if set(fields) != {"above_input_tokens", "prices"}:
                raise _Problem(item, f"{where}: needs above_input_tokens and prices")
            threshold_node = fields["above_input_tokens"][1]
            text = self.text(threshold_node, f"{where}.above_input_tokens").replace("_", "")
            if not text.isdigit():
                raise _Problem(threshold_node,
                               f"{where}.above_input_tokens: expected a whole number of tokens")
            tiers.append(Tier(int(text), self.prices(fields["prices"][1], f"{where}.prices")))
        return tuple(tiers)

    def check_overlaps(self, entries: list[tuple[int, PriceEntry]]) -> None:
        for i, (line, entry) in enumerate(entries):
            for other_line, other in entries[:i]:
                if entry.id == other.id or entry.overlaps(other):
                    self.problem(line, f"overlaps the entry at line {other_line} (same "
                                       "provider, model, match and kind, overlapping window)")
                    break
