"""Any CSV bill, read through a reviewed YAML column mapping (schema: docs/bills.md).

The mapping is checked whole before any row is read (``spendtrail.yamlfile`` reads its shapes,
this module holds its rules); its problems name the mapping file's line and are raised
together as one ``MappingError``. Rows are then streamed like every other CSV format.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal, Inexact, localcontext
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from yaml.nodes import MappingNode, Node

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
from spendtrail.yamlfile import Reader, key_node

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


class MappingError(BillFileError):
    """A column mapping that cannot be used; ``problems`` has every problem with its line."""


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
    reader = Reader(str(path), "the column mapping", MappingError)
    return _MappingReader(reader).read(reader.compose(reader.read_file(path)))


class _MappingReader:
    def __init__(self, reader: Reader) -> None:
        self.reader = reader

    def read(self, root: Node | None) -> ColumnMapping:
        reader = self.reader
        top = reader.document_keys(root, TOP_FIELDS, ("provider", "columns"))
        if top is None:
            raise reader.failure()
        assert isinstance(root, MappingNode)  # document_keys read it as one
        settings: dict[str, Any] = {}
        columns: dict[str, str] = {}
        if "columns" in top:
            for name, node in (reader.mapping(top["columns"], "columns", COLUMN_FIELDS)
                               or {}).items():
                header = reader.text(node, f"columns.{name}")
                if header is not None:
                    columns[name] = header
            self.check_columns(columns, key_node(root, "columns"))
        for name, node in top.items():
            if name != "columns":
                self.setting(name, node, settings, columns)
        if "amount" in columns and "currency" not in columns and "currency" not in settings:
            reader.problem(root, "currency: missing; give 'currency:' or map columns.currency")
        if "charge_kinds" in top and "charge_kind" not in columns:
            reader.problem(key_node(root, "charge_kinds"),
                           "charge_kinds: map columns.charge_kind to use it")
        if reader.problems:
            raise reader.failure()
        return ColumnMapping(source=reader.source, columns=columns, **settings)

    def check_columns(self, columns: dict[str, str], node: Node) -> None:
        if not ("timestamp" in columns or {"period_start", "period_end"} <= columns.keys()):
            self.reader.problem(
                node, "columns: map 'timestamp', or both 'period_start' and 'period_end'")
        if "timestamp" in columns and ({"period_start", "period_end"} & columns.keys()):
            self.reader.problem(
                node, "columns: map either 'timestamp' or 'period_start'/'period_end'")
        if "amount" not in columns and not any(name in columns for name in METER_FIELDS):
            self.reader.problem(node, "columns: map 'amount' or at least one usage meter")

    def setting(
        self, name: str, node: Node, settings: dict[str, Any], columns: dict[str, str]
    ) -> None:
        if name == "charge_kinds":
            kinds = {}
            for key, value in (self.reader.mapping(node, name, None) or {}).items():
                kind = self.reader.text(value, f"charge_kinds.{key}")
                if kind is not None and kind not in CHARGE_KINDS:
                    self.reader.problem(value, f"charge_kinds.{key}: expected one of "
                                        f"{', '.join(CHARGE_KINDS)}, got {kind!r}")
                kinds[key] = kind
            settings[name] = kinds
            return
        if name == "required":
            settings[name] = self.required(node, columns)
            return
        value = self.reader.text(node, name)
        if value is None:
            return
        try:
            settings[name], key = self.convert(name, value, columns)
        except RowProblem as exc:
            self.reader.problem(node, str(exc))
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
        names = []
        for item in self.reader.sequence(node, "required", of="field names") or ():
            name = self.reader.text(item, "required")
            if name is not None and name not in columns:
                self.reader.problem(item, f"required: {name!r} is not a mapped column")
            elif name is not None:
                names.append(name)
        return tuple(names)


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
