"""Any CSV bill, read through a reviewed YAML column mapping (schema: docs/bills.md).

The mapping is checked whole before any row is read; its problems name the mapping file's
line and are raised together as one ``MappingError``. Rows are then streamed like every
other CSV format.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal, Inexact, localcontext
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from spendtrail.bills import values
from spendtrail.bills.csvrows import csv_records
from spendtrail.bills.model import (
    CHARGE_KINDS,
    BillFileError,
    BillLine,
    BillRowError,
    ChargeKind,
    Granularity,
)
from spendtrail.bills.values import RowProblem
from spendtrail.events import EventError, Usage

FORMAT = "mapped-csv"
METER_FIELDS = (
    "input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens",
    "reasoning_tokens", "input_audio_tokens", "output_audio_tokens", "requests", "images",
)
TEXT_FIELDS = (
    "request_id", "response_id", "key_name", "project", "model", "description",
)
COLUMN_FIELDS = (
    *TEXT_FIELDS, "charge_kind", "amount", "currency", "timestamp", "period_start",
    "period_end", *METER_FIELDS,
)
TOP_FIELDS = (
    "provider", "columns", "currency", "amount_scale", "timestamp_format", "timezone",
    "period", "charge_kind", "charge_kinds", "required",
)
SCALES = {"units": 1, "cents": 100}
PERIODS = {
    "1s": timedelta(seconds=1), "1m": timedelta(minutes=1), "1h": timedelta(hours=1),
    "1d": timedelta(days=1),
}
_NULL = "tag:yaml.org,2002:null"


class MappingError(BillFileError):
    """A column mapping that cannot be used; ``problems`` has one FILE:LINE line per problem."""

    def __init__(self, problems: list[str], source: str) -> None:
        lines = list(problems)
        if len(lines) > 1:
            lines.insert(0, f"{source}: {len(lines)} problems in the column mapping")
        super().__init__("\n".join(lines))
        self.problems = tuple(problems)


@dataclass(frozen=True, slots=True)
class ColumnMapping:
    source: str
    provider: str
    columns: dict[str, str]  # spendtrail field -> CSV header
    currency: str | None = None  # every row's currency, unless columns["currency"]
    amount_divisor: int = 1  # file amount / divisor = amount in currency units
    timestamp_format: str = "iso"  # "iso", "unix" or a strptime pattern
    timezone: tzinfo = UTC  # for timestamps written without an offset
    period: timedelta = timedelta(seconds=1)  # the window one timestamp stands for
    charge_kind: str | None = None  # every row's kind, unless columns["charge_kind"]
    charge_kinds: dict[str, str] = field(default_factory=dict)  # file value -> charge kind
    required: tuple[str, ...] = ()  # fields whose cell must not be blank

    @property
    def granularity(self) -> Granularity:
        return "request" if "request_id" in self.columns else "bucket"


def load_mapping(path: Path) -> ColumnMapping:
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        problem = f"{source}: cannot read the column mapping: {reason}"
        raise MappingError([problem], source) from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise MappingError([f"{source}{line}: not valid YAML: {exc}"], source) from None
    return _MappingReader(source).read(root)


class _MappingReader:
    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[tuple[int, str]] = []

    def problem(self, node: Node, message: str) -> None:
        line = node.start_mark.line + 1
        self.problems.append((line, f"{self.source}:{line}: {message}"))

    def read(self, root: Node | None) -> ColumnMapping:
        if not isinstance(root, MappingNode):
            raise MappingError(
                [f"{self.source}:1: expected a mapping with 'provider:' and 'columns:'"],
                self.source,
            )
        top = self.fields(root, TOP_FIELDS, "mapping")
        settings: dict[str, Any] = {}
        for name in ("provider", "columns"):
            if name not in top:
                self.problem(root, f"{name}: missing")
        columns: dict[str, str] = {}
        if "columns" in top:
            key, columns_node = top["columns"]
            for name, (_, node) in self.fields(columns_node, COLUMN_FIELDS, "columns").items():
                header = self.scalar(node, f"columns.{name}")
                if header is not None:
                    columns[name] = header
            self.check_columns(columns, key)
        for name, (_, node) in top.items():
            if name != "columns":
                self.setting(name, node, settings, columns)
        if "amount" in columns and "currency" not in columns and "currency" not in settings:
            self.problem(root, "currency: missing; give 'currency:' or map columns.currency")
        if "charge_kinds" in top and "charge_kind" not in columns:
            self.problem(top["charge_kinds"][0], "charge_kinds: map columns.charge_kind to use it")
        if self.problems:
            raise MappingError([text for _, text in sorted(self.problems)], self.source)
        return ColumnMapping(source=self.source, columns=columns, **settings)

    def check_columns(self, columns: dict[str, str], node: Node) -> None:
        if not ("timestamp" in columns or {"period_start", "period_end"} <= columns.keys()):
            self.problem(node, "columns: map 'timestamp', or both 'period_start' and 'period_end'")
        if "timestamp" in columns and ({"period_start", "period_end"} & columns.keys()):
            self.problem(node, "columns: map either 'timestamp' or 'period_start'/'period_end'")
        if "amount" not in columns and not any(name in columns for name in METER_FIELDS):
            self.problem(node, "columns: map 'amount' or at least one usage meter")

    def setting(
        self, name: str, node: Node, settings: dict[str, Any], columns: dict[str, str]
    ) -> None:
        if name == "charge_kinds":
            kinds = {}
            for key, (_, value) in self.fields(node, None, name).items():
                kind = self.scalar(value, f"charge_kinds.{key}")
                if kind is not None and kind not in CHARGE_KINDS:
                    self.problem(value, f"charge_kinds.{key}: expected one of "
                                 f"{', '.join(CHARGE_KINDS)}, got {kind!r}")
                kinds[key] = kind
            settings[name] = kinds
            return
        if name == "required":
            settings[name] = self.required(node, columns)
            return
        value = self.scalar(node, name)
        if value is None:
            return
        try:
            settings[name], key = self.convert(name, value, columns)
        except RowProblem as exc:
            self.problem(node, str(exc))
            return
        if key:  # the setting was given under a different dataclass name
            settings[key] = settings.pop(name)

    def convert(self, name: str, value: str, columns: dict[str, str]) -> tuple[Any, str | None]:
        if name == "currency":
            if "currency" in columns:
                raise RowProblem("currency: give either 'currency:' or columns.currency, not both")
            return values.currency(value, "currency"), None
        if name == "amount_scale":
            if value in SCALES:
                return SCALES[value], "amount_divisor"
            if value.isdigit() and int(value) > 0:
                return int(value), "amount_divisor"
            raise RowProblem(f"amount_scale: expected units, cents or a positive integer "
                             f"divisor, got {value!r}")
        if name == "timezone":
            try:
                return ZoneInfo(value), None
            except (ZoneInfoNotFoundError, ValueError):
                raise RowProblem(f"timezone: unknown time zone {value!r}") from None
        if name == "period":
            if value not in PERIODS:
                raise RowProblem(f"period: expected one of {', '.join(PERIODS)}, got {value!r}")
            return PERIODS[value], None
        if name == "charge_kind":
            if "charge_kind" in columns:
                raise RowProblem("charge_kind: give either 'charge_kind:' or "
                                 "columns.charge_kind, not both")
            if value not in CHARGE_KINDS:
                raise RowProblem(f"charge_kind: expected one of {', '.join(CHARGE_KINDS)}, "
                                 f"got {value!r}")
            return value, None
        if name == "timestamp_format" and value not in ("iso", "unix") and "%" not in value:
            raise RowProblem("timestamp_format: expected iso, unix or a strptime pattern "
                             f"such as '%Y-%m-%d %H:%M:%S', got {value!r}")
        return value, None  # provider, timestamp_format

    def required(self, node: Node, columns: dict[str, str]) -> tuple[str, ...]:
        if not isinstance(node, SequenceNode):
            self.problem(node, "required: expected a list of field names")
            return ()
        names = []
        for item in node.value:
            name = self.scalar(item, "required")
            if name is not None and name not in columns:
                self.problem(item, f"required: {name!r} is not a mapped column")
            elif name is not None:
                names.append(name)
        return tuple(names)

    def fields(
        self, node: Node, allowed: tuple[str, ...] | None, where: str
    ) -> dict[str, tuple[Node, Node]]:
        """The entries of a YAML mapping by name, as (key node, value node) for line numbers."""
        if not isinstance(node, MappingNode):
            self.problem(node, f"{where}: expected a mapping")
            return {}
        result: dict[str, tuple[Node, Node]] = {}
        for key, value in node.value:
            name = str(key.value) if isinstance(key, ScalarNode) else ""
            if allowed is not None and name not in allowed:
                close = difflib.get_close_matches(name, allowed, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                self.problem(key, f"{where}: unknown field {name!r}{hint}")
            elif name in result:
                self.problem(key, f"{where}: {name!r} is given twice")
            else:
                result[name] = (key, value)
        return result

    def scalar(self, node: Node, where: str) -> str | None:
        if not isinstance(node, ScalarNode) or node.tag == _NULL or not node.value.strip():
            self.problem(node, f"{where}: expected a text value")
            return None
        return node.value.strip()


def read_mapped_csv(path: Path, mapping: ColumnMapping) -> Iterator[BillLine | BillRowError]:
    source = str(path)

    def check_header(header: list[str]) -> str | None:
        missing = [f"{column!r} (for {name})" for name, column in mapping.columns.items()
                   if column not in header]
        if missing:
            return f"missing column(s) named in {mapping.source}: {', '.join(missing)}"
        return None

    for record in csv_records(path, check_header):
        if isinstance(record, BillRowError):
            yield record
            continue
        try:
            yield _line(mapping, record.cells, source, record.line)
        except (RowProblem, EventError) as exc:
            yield BillRowError(source, record.line, str(exc))


def _line(mapping: ColumnMapping, cells: dict[str, str], source: str, line: int) -> BillLine:
    columns = mapping.columns

    def cell(name: str) -> str | None:
        return values.text(cells[columns[name]]) if name in columns else None

    for name in mapping.required:
        if cell(name) is None:
            raise RowProblem(f"{columns[name]}: missing; the mapping requires {name}")
    if "timestamp" in columns:
        start = _timestamp(mapping, cell("timestamp"), columns["timestamp"])
        end = start + mapping.period
    else:
        start = _timestamp(mapping, cell("period_start"), columns["period_start"])
        end = _timestamp(mapping, cell("period_end"), columns["period_end"])
        if end <= start:
            raise RowProblem(f"{columns['period_end']}: expected a time after the period start")
    usage = None
    if any(name in columns for name in METER_FIELDS):
        usage = Usage(**{name: values.count(cell(name), columns[name])
                         for name in METER_FIELDS if name in columns})
        usage.check()
    amount = currency = None
    if "amount" in columns:
        amount = _scaled(values.decimal(cell("amount"), columns["amount"]), mapping, columns)
        currency = mapping.currency or values.currency(cell("currency"), columns["currency"])
    return BillLine(
        source=source,
        line=line,
        format=FORMAT,
        provider=mapping.provider,
        granularity=mapping.granularity,
        period_start=start,
        period_end=end,
        charge_kind=_kind(mapping, cell("charge_kind")),
        usage=usage,
        amount=amount,
        currency=currency,
        raw=cells,
        **{("provider_request_id" if name == "request_id" else name): cell(name)
           for name in TEXT_FIELDS},
    )


def _timestamp(mapping: ColumnMapping, value: str | None, column: str) -> datetime:
    if value is None:
        raise RowProblem(f"{column}: missing; expected a timestamp")
    if mapping.timestamp_format == "unix":
        return values.unix_or_iso(values.integer(value, column), column)
    try:
        if mapping.timestamp_format == "iso":
            parsed = datetime.fromisoformat(value)
        else:
            parsed = datetime.strptime(value, mapping.timestamp_format)
    except ValueError:
        raise RowProblem(
            f"{column}: expected a timestamp like {mapping.timestamp_format!r}, got {value!r}"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=mapping.timezone)
    return parsed.astimezone(UTC)


def _scaled(amount: Decimal, mapping: ColumnMapping, columns: dict[str, str]) -> Decimal:
    if mapping.amount_divisor == 1:
        return amount
    with localcontext() as context:
        context.prec = 60
        context.traps[Inexact] = True
        try:
            return amount / mapping.amount_divisor
        except Inexact:
            raise RowProblem(
                f"{columns['amount']}: {amount} / {mapping.amount_divisor} is not exact"
            ) from None


def _kind(mapping: ColumnMapping, value: str | None) -> ChargeKind:
    if "charge_kind" not in mapping.columns:
        default = "consume" if mapping.granularity == "request" else "usage"
        return cast(ChargeKind, mapping.charge_kind or default)
    column = mapping.columns["charge_kind"]
    if value is None:
        raise RowProblem(f"{column}: missing; expected a charge kind")
    kind = mapping.charge_kinds.get(value, value if not mapping.charge_kinds else None)
    if kind not in CHARGE_KINDS:
        expected = mapping.charge_kinds or CHARGE_KINDS
        raise RowProblem(f"{column}: expected one of {', '.join(expected)}, got {value!r}")
    return cast(ChargeKind, kind)
