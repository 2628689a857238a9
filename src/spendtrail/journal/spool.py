"""The capture-side journal: append-only JSONL spool files.

A writer appends to ``events-<time>-<pid>-<writer>-<n>.jsonl.open``; when the file reaches its
size or age limit, or the writer closes it, it is renamed to ``.jsonl`` ("sealed"). The
ingester only reads sealed files and moves them to ``ingested/`` when every line is in the
ledger, so a file is never read while it is still growing, and a crash between ingest and move
only causes an idempotent replay. A writer killed outright leaves its ``.open`` file behind:
``recover_orphans`` seals the files of writers that no longer run.

Whether a writer still runs is never told by its process id: in containers every gateway is
pid 1 (a restarted one too), and an ingester in another container sees other pids. Each
writer process has a random id (``<writer>``, in its files' names) and holds, for as long as
it lives, an exclusive ``flock`` on ``writer-<writer>.lock`` in the spool folder. The kernel
drops the lock when the process ends, however it ends, so a writer runs exactly while its
lock is held: any process on the host that mounts the folder can tell (a local filesystem;
not NFS, where flock is emulated per process).

Each append is flushed to the operating system before it returns, which survives the death of
the writing process (SIGKILL included); ``fsync=True`` also survives power loss, at a cost.
An attempt's intent (``append_intent``) goes to the same file, by the same rules, before the
attempt goes upstream; see ``journal/intents.py``.
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from spendtrail.events.model import UsageEvent, encode_event
from spendtrail.journal.intents import encode_intent

OPEN_SUFFIX = ".jsonl.open"
_WRITER = re.compile(r"-(\d+)-([0-9a-f]{16})-\d+\.jsonl(?:\.open)?$")
# Files named before writer ids: the pid alone, which only the pid rule can judge.
_PID_ONLY = re.compile(r"-(\d+)-\d+\.jsonl(?:\.open)?$")
LOCK_PREFIX, LOCK_SUFFIX = "writer-", ".lock"


@dataclass(frozen=True, slots=True)
class Writer:
    """Who wrote a spool file: its process id (informative: reused across containers and
    restarts) and its random writer id (None for a file named before writer ids)."""

    pid: int
    id: str | None


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
        self._size = 0  # bytes in the open file
        self._sequence = 0
        self._writer: str | None = None
        self._writer_pid = 0
        self._writer_lock = None  # held open for the process's life: the lock is the proof
        directory.mkdir(parents=True, exist_ok=True)

    def append(self, event: UsageEvent) -> None:
        self._append(encode_event(event) + b"\n")

    def append_intent(self, event: UsageEvent) -> None:
        """Journal an attempt before it goes upstream: `event` is what it becomes if it
        never completes (outcome ``interrupted``)."""
        self._append(encode_intent(event) + b"\n")

    def _append(self, line: bytes) -> None:
        with self._lock:
            if self._handle is None:
                self._open()
            self._handle.write(line)
            self._handle.flush()
            if self.fsync:
                os.fsync(self._handle.fileno())
            self._size += len(line)  # counted, not asked: tell() is a syscall per append
            if (self._size >= self.max_bytes
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
        pid = os.getpid()
        if self._writer_pid != pid:  # first file, or a process forked from the one that began
            self._writer, self._writer_lock = _take_writer_lock(self.directory)
            self._writer_pid = pid
        self._sequence += 1
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        self._path = self.directory / (
            f"events-{stamp}-{pid}-{self._writer}-{self._sequence}{OPEN_SUFFIX}")
        self._handle = self._path.open("ab")  # a new name: the file starts empty
        self._size = 0
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


def _take_writer_lock(directory: Path):
    """A new writer id and its lock file, locked. The file is locked under a temporary name
    and then renamed, so no other process ever finds it unlocked while its writer lives."""
    writer = secrets.token_hex(8)
    final = directory / f"{LOCK_PREFIX}{writer}{LOCK_SUFFIX}"
    temporary = final.with_name(final.name + ".new")
    handle = temporary.open("wb")
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    temporary.rename(final)
    return writer, handle


def recover_orphans(directory: Path) -> list[Path]:
    """Seal the ``.open`` files of writers that are no longer running, so their events are
    ingested, and remove the lock files of stopped writers. A torn last line (the writer died
    mid-append) is rejected at ingest; its client never received the end of that response."""
    if not directory.is_dir():
        return []
    recovered = []
    for path in sorted(directory.glob(f"*{OPEN_SUFFIX}")):
        writer = writer_of(path.name)
        if writer is None or writer_running(directory, writer):
            continue
        sealed = path.with_name(path.name.removesuffix(".open"))
        path.rename(sealed)
        recovered.append(sealed)
    for lock in directory.glob(f"{LOCK_PREFIX}*{LOCK_SUFFIX}"):
        if not _lock_held(lock):  # stopped; with its lock file gone it still counts so
            lock.unlink(missing_ok=True)
    return recovered


def writer_of(name: str) -> Writer | None:
    """The writer of a spool file, from its name (sealed or open); None for a file named
    otherwise."""
    if match := _WRITER.search(name):
        return Writer(int(match[1]), match[2])
    if match := _PID_ONLY.search(name):
        return Writer(int(match[1]), None)
    return None


def writer_running(directory: Path, writer: Writer) -> bool:
    """Whether the writer of files in `directory` still runs: its lock there is held. A file
    named before writer ids falls back to its process id, on this host."""
    if writer.id is None:
        return _pid_running(writer.pid)
    return _lock_held(directory / f"{LOCK_PREFIX}{writer.id}{LOCK_SUFFIX}")


def _lock_held(path: Path) -> bool:
    try:
        handle = path.open("rb")
    except FileNotFoundError:  # removed once its writer was found stopped
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def _pid_running(pid: int) -> bool:
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


def writer_files(directory: Path, writer: Writer) -> list[Path]:
    """The files of `writer` still in the spool (open, or sealed and not yet ingested)."""
    if not directory.is_dir():
        return []
    return [p for p in directory.iterdir()
            if p.name.endswith((".jsonl", OPEN_SUFFIX)) and writer_of(p.name) == writer]


def in_spool(directory: Path, name: str) -> bool:
    """Whether the spool file `name` belongs to this spool: waiting there, or ingested."""
    return (directory / name).exists() or (directory / "ingested" / name).exists()


def sealed_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.jsonl")) if directory.is_dir() else []


def mark_ingested(path: Path) -> None:
    done = path.parent / "ingested"
    done.mkdir(exist_ok=True)
    path.rename(done / path.name)
