"""A throwaway PostgreSQL server of the test's own, so a test may stop and restart it (a real
database outage) without disturbing the shared server the other tests use."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

HINT = ("needs PostgreSQL's server binaries (/usr/lib/postgresql/*/bin) and, when run as root, "
        "a `postgres` OS user to own the throwaway cluster")


class PrivatePostgres:
    def __init__(self) -> None:
        binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not binaries:
            pytest.skip(f"no private PostgreSQL: {HINT}")
        self.bin = Path(binaries[-1]).parent
        # Not under pytest's tmp_path: its root-only parents would lock the postgres user out.
        directory = Path(tempfile.mkdtemp(prefix="spendtrail-pg-"))
        self.directory = directory
        self.data = directory / "pgdata"
        self.log = directory / "postgres.log"
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._as = []
        if os.geteuid() == 0:
            if shutil.which("runuser") is None:
                pytest.skip(f"no private PostgreSQL: {HINT}")
            self._as = ["runuser", "-u", "postgres", "--"]
            directory.chmod(0o777)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self._as, str(self.bin / tool), *args], check=True,
                       capture_output=True, timeout=120)

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-o",
                  f"-p {self.port} -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def remove(self) -> None:
        """Stop the server if it runs, and delete its files."""
        subprocess.run([*self._as, str(self.bin / "pg_ctl"), "-D", str(self.data), "-m",
                        "immediate", "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(self.directory, ignore_errors=True)
