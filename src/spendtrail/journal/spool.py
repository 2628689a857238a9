"""The capture-side journal: append-only JSONL spool files.

A writer appends to ``events-<time>-<pid>-<n>.jsonl.open``; when the file reaches its size or
age limit, or the writer closes it, it is renamed to ``.jsonl`` ("sealed"). The ingester only
reads sealed files and moves them to ``ingested/`` when every line is in the ledger, so a file
is never read while it is still growing, and a crash between ingest and move only causes an
idempotent replay. A writer killed outright leaves its ``.open`` file behind:
``recover_orphans`` seals the files of writers that no longer run.

Each append is flushed to the operating system before it returns, which survives the death of
the writing process (SIGKILL included); ``fsync=True`` also survives power loss, at a cost.
"""

from __future__ import annotations

import os
import re
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from spendtrail.events.model import UsageEvent, encode_event

OPEN_SUFFIX = ".jsonl.open"
_WRITER_PID = re.compile(r"-(\d+)-\d+\.jsonl\.open$")


class Spool:
    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int = 64 * 1024 * 1024,
        max_age: float = 1.0,
        fsync: bool = False,
    ):
        self.directory = directory
        self.max_bytes = max_bytes
        self.max_age = max_age  # seconds: how stale the ledger may get behind capture
        self.fsync = fsync
        self._lock = threading.Lock()
        self._handle = None
        self._path: Path | None = None
        self._opened_at = 0.0
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
            if (self._handle.tell() >= self.max_bytes
                    or time.monotonic() - self._opened_at >= self.max_age):
                self._seal()

    def seal_if_idle(self) -> None:
        """Seal the open file once it is older than ``max_age``; call it from a timer so an
        idle writer's last events still reach the ledger."""
        with self._lock:
            if self._handle is not None and time.monotonic() - self._opened_at >= self.max_age:
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
        self._opened_at = time.monotonic()

    def _seal(self) -> None:
        self._handle.close()
        self._path.rename(self._path.with_name(self._path.name.removesuffix(".open")))
        self._handle = None
        self._path = None

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def recover_orphans(directory: Path) -> list[Path]:
    """Seal the ``.open`` files of writers that are no longer running, so their events are
    ingested. A torn last line (the writer died mid-append) is rejected at ingest; its client
    never received the end of that response."""
    recovered = []
    for path in sorted(directory.glob(f"*{OPEN_SUFFIX}")) if directory.is_dir() else ():
        match = _WRITER_PID.search(path.name)
        if match is None or _alive(int(match[1])):
            continue
        sealed = path.with_name(path.name.removesuffix(".open"))
        path.rename(sealed)
        recovered.append(sealed)
    return recovered


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def backlog(directory: Path) -> tuple[int, int, float]:
    """Journal lag: the files, bytes and age in seconds of the oldest file not yet ingested
    (ingested files are moved to a subfolder, so what is left is the backlog)."""
    files = size = 0
    oldest: float | None = None
    try:
        entries = list(directory.iterdir())
    except OSError:
        return 0, 0, 0.0
    for path in entries:
        if not path.name.endswith((".jsonl", OPEN_SUFFIX)):
            continue
        try:
            stat = path.stat()
        except OSError:  # ingested or sealed between listing and stat
            continue
        files += 1
        size += stat.st_size
        oldest = stat.st_ctime if oldest is None else min(oldest, stat.st_ctime)
    return files, size, 0.0 if oldest is None else max(0.0, time.time() - oldest)


def sealed_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.jsonl")) if directory.is_dir() else []


def mark_ingested(path: Path) -> None:
    done = path.parent / "ingested"
    done.mkdir(exist_ok=True)
    path.rename(done / path.name)
