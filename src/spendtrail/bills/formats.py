"""The bill formats by name, one entry point to read any of them, and a cheap format guess."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from spendtrail.bills.anthropic_cost import read_anthropic_cost
from spendtrail.bills.anthropic_usage import read_anthropic_usage
from spendtrail.bills.cometapi_log import column_name, read_cometapi_csv, read_cometapi_json
from spendtrail.bills.focus import read_focus_csv, read_focus_parquet
from spendtrail.bills.mapped_csv import ColumnMapping, load_mapping, read_mapped_csv
from spendtrail.bills.model import BillFileError, BillLine, BillRowError
from spendtrail.bills.openai_costs import read_openai_costs
from spendtrail.bills.openai_usage import read_openai_usage


@dataclass(frozen=True, slots=True)
class BillFormat:
    name: str
    read: Callable[..., Iterator[BillLine | BillRowError]]  # (path) or (path, mapping)
    summary: str  # one line for help text
    needs_mapping: bool = False


FORMATS: dict[str, BillFormat] = {
    f.name: f
    for f in (
        BillFormat("cometapi-csv", read_cometapi_csv, "CometAPI usage-log CSV export"),
        BillFormat("cometapi-json", read_cometapi_json, "CometAPI /api/log/self JSON pages"),
        BillFormat("openai-costs", read_openai_costs, "OpenAI Costs API JSON pages"),
        BillFormat("openai-usage", read_openai_usage, "OpenAI Usage API completions pages"),
        BillFormat("anthropic-cost", read_anthropic_cost, "Anthropic cost report JSON pages"),
        BillFormat("anthropic-usage", read_anthropic_usage, "Anthropic usage report pages"),
        BillFormat("focus-csv", read_focus_csv, "FOCUS 1.2 cost and usage CSV"),
        BillFormat("focus-parquet", read_focus_parquet, "FOCUS 1.2 cost and usage Parquet"),
        BillFormat("mapped-csv", read_mapped_csv, "any CSV via a YAML column mapping", True),
    )
}

# Texts that together mark one format in a file's first bytes, checked in this order.
_JSON_MARKERS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("organization.costs.result",), "openai-costs"),
    (("organization.usage.completions.result",), "openai-usage"),
    (('"starting_at"', '"amount"'), "anthropic-cost"),
    (('"starting_at"', '"uncached_input_tokens"'), "anthropic-usage"),
    (('"quota"', '"model_name"'), "cometapi-json"),
)
_SNIFF_BYTES = 1 << 16


def read_bill(
    path: Path, format: str, mapping: Path | ColumnMapping | None = None
) -> Iterator[BillLine | BillRowError]:
    """Stream the lines of one bill file. The format name and the mapping (for mapped-csv,
    and only for it) are checked now, raising BillFileError; the file is read as iterated."""
    bill_format = FORMATS.get(format)
    if bill_format is None:
        raise BillFileError(f"unknown bill format {format!r}; expected one of {', '.join(FORMATS)}")
    if not bill_format.needs_mapping:
        if mapping is not None:
            raise BillFileError(f"a column mapping applies to mapped-csv only, not to {format}")
        return bill_format.read(path)
    if mapping is None:
        raise BillFileError(f"format {format} needs a column mapping file (--mapping)")
    loaded = mapping if isinstance(mapping, ColumnMapping) else load_mapping(mapping)
    return bill_format.read(path, loaded)


def choose_format(path: Path, format: str | None, mapping: object = None) -> str:
    """The format named; when none is, mapped-csv with a mapping, else the one detected.
    Raises BillFileError, listing the formats, when it cannot be detected."""
    if format is not None:
        return format
    if mapping is not None:
        return "mapped-csv"
    found = detect_format(path)
    if found is None:
        raise BillFileError(
            f"{path}: cannot tell the bill format from its header row or JSON shape; "
            f"name it with --format, one of: {', '.join(FORMATS)}")
    return found


def detect_format(path: Path) -> str | None:
    """A guess from the file name and its first bytes (the CSV header row, the JSON objects'
    fields); None when nothing is recognized, mapped CSVs included."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(_SNIFF_BYTES)
    except OSError:
        return None
    if path.suffix.lower() == ".parquet" or raw.startswith(b"PAR1"):
        return "focus-parquet"
    head = raw.decode("utf-8-sig", errors="replace")
    if head.lstrip().startswith(("{", "[")):
        return next(
            (name for markers, name in _JSON_MARKERS if all(m in head for m in markers)), None
        )
    first = head.splitlines()[0] if head else ""
    cells = next(csv.reader([first]), [])
    if {"billedcost", "chargecategory", "chargeperiodstart"} <= {c.strip().lower() for c in cells}:
        return "focus-csv"
    if {"quota", "created_at", "request_id"} <= {column_name(c) for c in cells}:
        return "cometapi-csv"
    return None
