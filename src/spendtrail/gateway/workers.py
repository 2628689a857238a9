"""Several gateway worker processes on one port (``spendtrail gateway --workers N``).

The parent binds one ``SO_REUSEPORT`` listening socket per worker (the kernel spreads new
connections over them), forks the workers and one ingester for the host, and then only
supervises: it never serves a call and runs no thread, so forking a replacement is safe.

- Each worker is a whole gateway (``serve``) on its own socket, with its own spool file (the
  spool names its files by a writer id each process takes) and its own ``/healthz`` and
  ``/readyz``; ``/metrics`` sums the workers' counters through ``shared_metrics_dir``.
- The parent keeps every socket open, so connections the kernel hashes to a worker that died
  wait in that socket's queue until its replacement accepts them. A worker that exits while
  the gateway is not stopping is started again (after a second when it lived under
  ``_QUICK_EXIT`` seconds, so a worker that cannot start does not spin).
- SIGINT or SIGTERM to the parent: it closes its copies of the sockets, sends SIGTERM to each
  worker (each drains for the grace period and seals its spool file), waits for them, then
  stops the ingester, which makes one last round. A second signal is passed on, which makes
  the workers stop at once. Workers and the ingester run in a process group of their own, so
  a terminal's Ctrl-C reaches only the parent, which passes it on once; they get SIGTERM if
  the parent dies (Linux).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import math
import os
import shutil
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from spendtrail.errors import SpendtrailError

if TYPE_CHECKING:
    from spendtrail.budgets import BudgetGuard

log = logging.getLogger("spendtrail.gateway")

_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGCHLD}
_QUICK_EXIT = 5.0  # seconds: a worker that exits sooner is restarted after a pause
_PAUSE = 1.0
_PR_SET_PDEATHSIG = 1


def default_workers() -> int:
    """The cores this process may use: its CPU affinity, capped by a cgroup v2 CPU quota (a
    container limited to 2 CPUs on a 16-core node gets 2 workers, not 16)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
    except (OSError, ValueError):
        return cores or 1
    if quota == "max":
        return cores or 1
    return max(1, min(cores or 1, math.ceil(int(quota) / int(period))))


def plan_workers(requested: int | None, available: int, guard: BudgetGuard) -> tuple[int, str]:
    """How many workers to run (`requested`, else `available`) and a note for the banner.
    In-memory budget counters cannot be shared by processes: with budgets defined, an
    explicit request for several workers is refused (SpendtrailError) and the default falls
    back to one; without budgets, the note warns about budgets defined later."""
    count = requested or available
    if count == 1 or guard.counters.shared:
        return count, ""
    if not guard.budgets():
        return count, (
            "budgets defined while it runs would be counted by each worker on its "
            "own: --budget-counters sql or redis holds them across workers"
        )
    if requested:
        raise SpendtrailError(
            f"--workers {count} with --budget-counters memory: each worker would count only "
            "its own calls against the ledger's budgets; use --budget-counters sql or redis, "
            "or --workers 1"
        )
    return 1, (
        "1 worker: budgets are defined and counted in memory (--budget-counters sql "
        "or redis for one worker per core)"
    )


def shared_metrics_dir(spool: Path, port: int) -> Path:
    """The folder the workers on `port` share their counters in (``metrics.py``), emptied:
    the port is this gateway's, so what is there is a previous run's."""
    folder = spool / "metrics" / f"port-{port}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def listen_shared(host: str, port: int, count: int) -> list[socket.socket]:
    """`count` listening sockets on one port with ``SO_REUSEPORT``. A plain bind comes first,
    so a port already in use (by anything, another gateway's workers included) raises
    OSError as it does for one worker; with port 0 it also picks the port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
        port = probe.getsockname()[1]
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            sock.listen(1024)
            sock.setblocking(False)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def supervise(
    sockets: list[socket.socket],
    worker: Callable[[socket.socket], None],
    ingester: Callable[[threading.Event], None] | None,
) -> int:
    """Run ``worker(sock)`` in a process per socket and ``ingester(stop)`` in one more, until
    SIGINT or SIGTERM; returns the exit status (0 once all stopped). Call it from a process
    that runs no other thread."""
    signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    workers: dict[int, tuple[int, float]] = {}  # pid -> (socket index, started at)
    due: dict[int, float] = {}  # socket index -> when to start its worker again
    stopping = False

    def serve_on(index: int) -> None:
        for other, sock in enumerate(sockets):
            if other != index:
                sock.close()
        worker(sockets[index])

    def start(index: int) -> None:
        workers[_fork(lambda: serve_on(index))] = (index, time.monotonic())

    for index in range(len(sockets)):
        start(index)
    ingest_pid = _fork(lambda: _run_ingester(ingester)) if ingester else None
    while workers or due:
        now = time.monotonic()
        for index in [i for i, at in due.items() if at <= now]:
            del due[index]
            start(index)
        wait = min([at - now for at in due.values()] + [1.0])
        info = signal.sigtimedwait(_SIGNALS, max(wait, 0.01))
        if info is not None and info.si_signo != signal.SIGCHLD:
            if not stopping:
                log.warning(
                    "stopping %d workers: no new connections; calls in flight have "
                    "their grace period",
                    len(workers),
                )
                stopping = True
                due.clear()
                for sock in sockets:  # the workers close theirs: the port closes with the last
                    sock.close()
            for pid in workers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
        while (reaped := _reap()) is not None:
            pid, status = reaped
            if pid == ingest_pid:
                ingest_pid = None
                if not stopping:
                    log.warning("the ingester exited (%s); starting it again", status)
                    ingest_pid = _fork(lambda: _run_ingester(ingester))
            if pid not in workers:
                continue
            index, started = workers.pop(pid)
            if not stopping:
                log.warning("worker %d exited (%s); starting it again", pid, status)
                quick = time.monotonic() - started < _QUICK_EXIT
                due[index] = time.monotonic() + (_PAUSE if quick else 0.0)
    if ingest_pid is not None:  # after the workers: its last round takes their last files
        os.kill(ingest_pid, signal.SIGTERM)
        os.waitpid(ingest_pid, 0)
    return 0


def _reap() -> tuple[int, str] | None:
    try:
        pid, status = os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        return None
    if pid == 0:
        return None
    if os.WIFSIGNALED(status):
        return pid, f"signal {signal.Signals(os.WTERMSIG(status)).name}"
    return pid, f"exit {os.waitstatus_to_exitcode(status)}"


def _fork(target: Callable[[], None]) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        os.setpgid(0, 0)  # a terminal's Ctrl-C goes to the parent only
        _die_with_parent()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
        target()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return 0  # not reached


def _die_with_parent() -> None:
    """SIGTERM this process when the parent dies (Linux's PR_SET_PDEATHSIG), so a parent
    killed outright does not leave workers serving on their own."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() == 1:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _run_ingester(ingester: Callable[[threading.Event], None]) -> None:
    """The ingester on a thread until SIGTERM; SIGINT is the parent's to pass on."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    stop = threading.Event()
    thread = threading.Thread(target=ingester, args=(stop,), name="spendtrail-ingest")
    thread.start()
    signal.sigwait({signal.SIGTERM})
    stop.set()
    thread.join()
