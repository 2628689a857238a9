"""Reading JSONL event files line by line, keeping the file and line of each record."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec

from spendtrail.errors import SpendtrailError


class JournalLine(msgspec.Struct, frozen=True):
    """One line of a journal; a frozen Struct (built in C: one for every line read)."""

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


@dataclass(frozen=True, slots=True)
class Chunk:
    """A byte range of a file that starts and ends on line boundaries."""

    start: int
    end: int
    first_line: int


def file_chunks(path: Path, size: int) -> list[Chunk]:
    """Split a file into newline-aligned ranges of about `size` bytes, each knowing the
    number of its first line, so parallel readers still report true line numbers."""
    chunks: list[Chunk] = []
    total = path.stat().st_size
    with path.open("rb") as handle:
        start, line = 0, 1
        while start < total:
            handle.seek(min(start + size, total))
            handle.readline()  # move to the start of the next line
            end = min(handle.tell(), total)
            chunks.append(Chunk(start, end, line))
            handle.seek(start)
            line += _count_newlines(handle, end - start)
            start = end
    return chunks


def _count_newlines(handle, length: int) -> int:
    count = 0
    while length > 0:
        block = handle.read(min(length, 1 << 20))
        count += block.count(b"\n")
        length -= len(block)
    return count


def read_lines(path: Path, chunk: Chunk | None = None) -> Iterator[JournalLine]:
    """Every non-blank line of a file (or of one chunk of it), streamed in constant memory."""
    source = str(path)
    start, end, number = (chunk.start, chunk.end, chunk.first_line) if chunk else (0, None, 1)
    with path.open("rb") as handle:
        handle.seek(start)
        position = start
        for raw in handle:
            if end is not None and position >= end:
                break
            position += len(raw)
            data = raw.strip()
            if data:
                yield JournalLine(source, number, data, raw.endswith(b"\n"))
            number += 1
