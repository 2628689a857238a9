"""Rendering rows as a Rich table, CSV or JSON: one shape for every listing command."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Sequence
from decimal import Decimal
from enum import StrEnum

from spendtrail.cli.common import console
from spendtrail.money import plain_decimal


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


def render(rows: Sequence[dict], fmt: Format, *, title: str | None = None) -> None:
    if fmt is Format.json:
        console.print_json(json.dumps(rows, default=machine_text))
    elif fmt is Format.csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        if rows:
            writer.writerow(rows[0].keys())
        writer.writerows([("" if v is None else machine_text(v)) for v in row.values()]
                         for row in rows)
    else:
        from rich.table import Table

        table = Table(title=title, title_justify="left")
        for name in rows[0].keys() if rows else ():
            table.add_column(name.replace("_", " "), overflow="fold")
        for row in rows:
            table.add_row(*("" if v is None else str(v) for v in row.values()))
        console.print(table)


def machine_text(value: object) -> object:
    """A value as JSON and CSV carry it: decimals in plain digits (never ``1E+1``), other
    non-JSON values as their text."""
    if isinstance(value, Decimal):
        return plain_decimal(value)
    return value if isinstance(value, str | int | float) else str(value)
