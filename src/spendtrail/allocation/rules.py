"""Shared-cost rules: a reviewed YAML file (schema: docs/allocation.md).

Each rule says how one pool's cost is charged during an effective window [from, to):
``central`` keeps it with the pool, ``proportional`` splits it by each recipient's direct
cost, ``even`` in equal parts, ``fixed`` by coefficients that sum to exactly 100%, and
``hold`` charges nobody until the rule is resolved. Windows of one pool may not overlap, so
at most one rule applies to any day of a pool's cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Literal

from yaml.nodes import Node

from spendtrail.errors import Problem, SpendtrailError
from spendtrail.yamlfile import Reader, line, named

Method = Literal["central", "proportional", "even", "fixed", "hold"]
METHODS: tuple[Method, ...] = ("central", "proportional", "even", "fixed", "hold")
_SPLITTING = ("proportional", "even")  # recipients optional: all owners with direct cost
_KEYS = (
    "id", "pool", "method", "recipients", "coefficients", "effective_from", "effective_to",
    "reviewed_by", "reviewed_at", "note",
)
_REQUIRED = ("id", "pool", "method", "effective_from", "reviewed_by", "reviewed_at")
DOCUMENT = "the shared-cost rules"


class RulesError(SpendtrailError):
    """A rules file that cannot be used; ``problems`` lists every problem with its line."""


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    pool: str
    method: Method
    effective_from: date
    effective_to: date | None  # exclusive; None: open-ended
    reviewed_by: str
    reviewed_at: date
    recipients: tuple[str, ...] | None = None  # None: every owner with direct cost
    coefficients: tuple[Fraction, ...] | None = None  # fixed only, beside recipients; sum 1
    note: str | None = None
    source: str = "<rules>"
    line: int = 1

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"

    def window(self, start: date, end: date) -> tuple[date, date] | None:
        """The part of [start, end) this rule is in effect for, if any."""
        first = max(start, self.effective_from)
        last = end if self.effective_to is None else min(end, self.effective_to)
        return (first, last) if first < last else None


def load_rules(path: str | Path) -> list[Rule]:
    path = Path(path)
    text = Reader(str(path), DOCUMENT, RulesError).read_file(path)
    return parse_rules(text, source=str(path))


def parse_rules(text: str, *, source: str = "<rules>") -> list[Rule]:
    reader = Reader(source, DOCUMENT, RulesError)
    top = reader.document_keys(reader.compose(text), ("rules",), ("rules",))
    items = reader.sequence(top["rules"], "rules") if top and "rules" in top else None
    rules: list[Rule] = []
    for index, node in enumerate(items or ()):
        rule = _rule(reader, node, f"rules[{index}]")
        if rule is not None:
            rules.append(rule)
    _check_unique(reader, rules)
    if reader.problems:
        raise reader.failure()
    return rules


def _rule(reader: Reader, node: Node, what: str) -> Rule | None:
    what = named(node, what, "rule")
    before = len(reader.problems)
    fields = reader.mapping(node, what, _KEYS, _REQUIRED)
    if fields is None:
        return None
    text = {
        key: reader.string(fields[key], f"{what}: {key}")
        for key in ("id", "pool", "method", "reviewed_by", "note")
        if key in fields
    }
    method = text.get("method")
    if method is not None and method not in METHODS:
        reader.problem(fields["method"], f"{what}: method '{method}' is not one of "
                       f"{', '.join(METHODS)}")
    days = {
        key: reader.day(fields[key], f"{what}: {key}")
        for key in ("effective_from", "effective_to", "reviewed_at")
        if key in fields
    }
    start, end = days.get("effective_from"), days.get("effective_to")
    if start and end and end <= start:
        reader.problem(fields["effective_to"], f"{what}: effective_to {end} is not after "
                       f"effective_from {start} (the window is [from, to))")

    recipients = coefficients = None
    if "recipients" in fields:
        recipients = _recipients(reader, fields["recipients"], f"{what}: recipients")
    if "coefficients" in fields:
        pairs = _coefficients(reader, fields["coefficients"], f"{what}: coefficients")
        if pairs is not None:
            recipients = tuple(name for name, _ in pairs)
            coefficients = tuple(share for _, share in pairs)
    if method == "fixed" and "coefficients" not in fields:
        reader.problem(node, f"{what}: method fixed needs coefficients (recipient: percent)")
    if method != "fixed" and "coefficients" in fields:
        reader.problem(fields["coefficients"], f"{what}: coefficients are for method fixed only")
    if "recipients" in fields and method not in _SPLITTING:
        hint = "; a fixed rule names them in coefficients" if method == "fixed" else ""
        reader.problem(fields["recipients"],
                       f"{what}: recipients are for methods {' and '.join(_SPLITTING)}{hint}")
    if len(reader.problems) > before:
        return None
    return Rule(
        id=text["id"], pool=text["pool"], method=method,  # type: ignore[arg-type]
        effective_from=start, effective_to=end,  # type: ignore[arg-type]
        reviewed_by=text["reviewed_by"], reviewed_at=days["reviewed_at"],  # type: ignore[arg-type]
        recipients=recipients, coefficients=coefficients, note=text.get("note"),
        source=reader.source, line=line(node),
    )


def _recipients(reader: Reader, node: Node, what: str) -> tuple[str, ...] | None:
    items = reader.sequence(node, what)
    if items is None:
        return None
    if not items:
        reader.problem(node, f"{what}: list at least one, or leave the key out for all owners "
                       "with direct cost")
    names: list[str] = []
    for item in items:
        name = reader.string(item, what)
        if name in names:
            reader.problem(item, f"{what}: '{name}' is listed twice")
        elif name is not None:
            names.append(name)
    return tuple(names)


def _coefficients(
    reader: Reader, node: Node, what: str
) -> list[tuple[str, Fraction]] | None:
    values = reader.mapping(node, what, None)
    if values is None:
        return None
    pairs: list[tuple[str, Fraction]] = []
    total = Decimal(0)
    for name, value_node in values.items():
        percent = reader.decimal(value_node, f"{what}: {name}", "a percentage such as 40 or '33.5'")
        if percent is None:
            continue
        if percent <= 0:
            reader.problem(value_node, f"{what}: {name}: {percent}% must be more than 0")
        total += percent
        pairs.append((name, Fraction(percent) / 100))
    if not values:
        reader.problem(node, f"{what}: name at least one recipient with its percentage")
    elif len(pairs) == len(values) and total != 100:
        reader.problem(node, f"{what}: the percentages sum to {total}%, not exactly 100%")
    return pairs


def _check_unique(reader: Reader, rules: list[Rule]) -> None:
    first_line: dict[str, int] = {}
    for rule in rules:
        if rule.id in first_line:
            reader.problems.append(Problem(
                reader.source, rule.line,
                f"duplicate rule id '{rule.id}' (first on line {first_line[rule.id]})"))
        first_line.setdefault(rule.id, rule.line)
    by_pool = sorted(rules, key=lambda r: (r.pool, r.effective_from, r.line))
    for earlier, later in zip(by_pool, by_pool[1:], strict=False):
        if earlier.pool == later.pool and (
            earlier.effective_to is None or later.effective_from < earlier.effective_to
        ):
            reader.problems.append(Problem(
                reader.source, later.line,
                f"rule '{later.id}' overlaps rule '{earlier.id}' (line {earlier.line}) for pool "
                f"'{later.pool}'; one pool's windows must not overlap"))
