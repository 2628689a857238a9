"""Reading JSONL event files line by line, keeping the file and line of each record."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from spendtrail.errors import SpendtrailError


@dataclass(frozen=True, slots=True)
class JournalLine:
    source: str
    line: int
    data: bytes
    complete: bool  # False for a last line without its newline: a torn or truncated write


def event_files(paths: Iterable[Path]) -> list[Path]:
    """The .jsonl files named, or found (sorted) in the folders named."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*.jsonl") if p.is_file()))
        elif path.is_file():
            files.append(path)
        else:
            raise SpendtrailError(f"{path}: no such file or folder")
    return files


def read_lines(path: Path) -> Iterator[JournalLine]:
    """Every non-blank line of one file, streamed (constant memory in file size)."""
    source = str(path)
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            data = raw.strip()
            if data:
                yield JournalLine(source, number, data, raw.endswith(b"\n"))
