"""Streaming a CSV file as header-keyed rows that know the line they start on."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from spendtrail.bills.model import BillFileError, BillRowError


@dataclass(frozen=True, slots=True)
class CsvRecord:
    line: int  # the line the record starts on (a quoted cell may span lines)
    cells: dict[str, str]  # header (stripped) -> cell


def csv_records(
    path: Path, check_header: Callable[[list[str]], str | None]
) -> Iterator[CsvRecord | BillRowError]:
    """Each data row of a CSV file, read one at a time. The first non-blank row is the header;
    ``check_header`` returns a problem (e.g. missing columns) that stops the file, or None.
    A row that is mis-quoted or not UTF-8, or whose number of cells differs from the
    header's, is reported and skipped."""
    source = str(path)
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise BillFileError(f"{source}: cannot read the file: {exc.strerror}") from None
    with handle:
        lines = _Lines(handle, source)
        # strict: a quote left open at the end of the file is an error, not a silent cell.
        reader = csv.reader(lines, strict=True)
        header: list[str] | None = None
        while True:
            lines.fetched.clear()
            problem = None
            try:
                row = next(reader, None)
            except csv.Error as exc:
                row, problem = None, f"malformed CSV: {exc}"
            yield from lines.drain()
            if problem:  # the reader starts afresh on the next line, so go on
                line = lines.fetched[0] if lines.fetched else lines.number
                yield BillRowError(source, line, problem)
                continue
            if row is None:
                break
            line = lines.fetched[0]
            if not row or all(not cell.strip() for cell in row):
                continue
            if header is None:
                header = [name.strip() for name in row]
                problem = _duplicates(header) or check_header(header)
                if problem:
                    yield BillRowError(source, line, problem, fatal=True)
                    return
                continue
            if len(row) != len(header):
                yield BillRowError(
                    source,
                    line,
                    f"row has {len(row)} cells, the header has {len(header)} "
                    "(a truncated or mis-quoted row)",
                )
                continue
            yield CsvRecord(line, dict(zip(header, row, strict=True)))
        if header is None:
            yield BillRowError(source, 1, "empty file: expected a header row", fatal=True)


class _Lines:
    """Decodes a file line by line for csv.reader, so a line that is not UTF-8 is reported
    with its number and skipped instead of failing a whole read-ahead block."""

    def __init__(self, handle: BinaryIO, source: str) -> None:
        self.handle = handle
        self.source = source
        self.number = 0
        self.fetched: list[int] = []  # line numbers handed to the reader for the current row
        self.errors: list[BillRowError] = []

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        for raw in self.handle:
            self.number += 1
            try:
                text = raw.decode("utf-8-sig" if self.number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                reason = f"not UTF-8 text: byte {raw[exc.start]:#04x} at column {exc.start + 1}"
                self.errors.append(BillRowError(self.source, self.number, reason))
                continue
            self.fetched.append(self.number)
            return text
        raise StopIteration

    def drain(self) -> Iterator[BillRowError]:
        yield from self.errors
        self.errors.clear()


def _duplicates(header: list[str]) -> str | None:
    seen: set[str] = set()
    for name in header:
        if name in seen:
            return f"column {name!r} appears twice in the header"
        seen.add(name)
    return None
