"""The capture-side journal: append-only JSONL spool files.

A writer appends to ``<name>.jsonl.open``; when the file is rotated or the writer closes it
is renamed to ``<name>.jsonl`` ("sealed"). The ingester only reads sealed files and moves
them to ``ingested/`` when every line is in the ledger, so a file is never read while it
is still growing, and a crash between ingest and move only causes an idempotent replay.
"""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime
from pathlib import Path

from spendtrail.events.model import UsageEvent, encode_event

OPEN_SUFFIX = ".jsonl.open"


class Spool:
    def __init__(self, directory: Path, *, max_bytes: int = 64 * 1024 * 1024, fsync: bool = False):
        self.directory = directory
        self.max_bytes = max_bytes
        self.fsync = fsync
        self._lock = threading.Lock()
        self._handle = None
        self._path: Path | None = None
        self._sequence = 0
        directory.mkdir(parents=True, exist_ok=True)

    def append(self, event: UsageEvent) -> None:
        line = encode_event(event) + b"\n"
        with self._lock:
            if self._handle is None:
                self._open()
            self._handle.write(line)
            self._handle.flush()
            if self.fsync:
                os.fsync(self._handle.fileno())
            if self._handle.tell() >= self.max_bytes:
                self._seal()

    def close(self) -> None:
        with self._lock:
            if self._handle is not None:
                self._seal()

    def _open(self) -> None:
        self._sequence += 1
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        self._path = self.directory / f"events-{stamp}-{os.getpid()}-{self._sequence}{OPEN_SUFFIX}"
        self._handle = self._path.open("ab")

    def _seal(self) -> None:
        self._handle.close()
        self._path.rename(self._path.with_name(self._path.name.removesuffix(".open")))
        self._handle = None
        self._path = None

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def sealed_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.jsonl")) if directory.is_dir() else []


def mark_ingested(path: Path) -> None:
    done = path.parent / "ingested"
    done.mkdir(exist_ok=True)
    path.rename(done / path.name)
