"""`spendtrail gateway` as a real process for tests, always stopped: use it as a context
manager (or from a fixture), so a failing test never leaves a gateway running.

It listens on a port of its own choosing (``--port 0``; the banner says which), writes
stdout and stderr to a log file the test can read, and journals to its own spool
(``--no-ingest`` unless asked, so the spool files stay where tests read them). With
``upstream`` None the arguments name the upstreams (``--routes FILE``).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from factories import journaled_events

from spendtrail.events import UsageEvent

_BANNER = re.compile(rb"spendtrail gateway on http://[^:]+:(\d+)/v1")


class GatewayProcess:
    def __init__(
        self,
        ledger_url: str,
        upstream: str | None,
        upstream_key: str | None,
        home: Path,
        *args: str,
        env: dict[str, str] | None = None,
        preexec_fn: Callable[[], object] | None = None,
    ) -> None:
        self.spool = home / "spool"
        self.log = home / "gateway.log"
        self.env = {
            **os.environ,
            "SPENDTRAIL_DATABASE_URL": ledger_url,
            "SPENDTRAIL_HOME": str(home),
            "SPENDTRAIL_SPOOL_DIR": str(self.spool),
            "COLUMNS": "200",
            "SPENDTRAIL_GATEWAY_WORKERS": "1",  # one process, unless a test asks for more
            **(env or {}),
        }
        if upstream_key is not None:
            self.env["SPENDTRAIL_UPSTREAM_KEY"] = upstream_key
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
            self.env.pop(name, None)
        self.args = [
            sys.executable,
            "-m",
            "spendtrail.cli.app",
            "gateway",
            *(("--profile", "custom", "--upstream", upstream, "--provider", "cometapi")
              if upstream is not None else ()),
            "--refresh-seconds",
            "0.2",
            *args,
        ]
        if "--port" not in args:
            self.args += ["--port", "0"]
        if "--ingest" not in args:
            self.args.append("--no-ingest")
        self.preexec_fn = preexec_fn
        self.process: subprocess.Popen | None = None
        self.port: int | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> GatewayProcess:
        if "--port" in self.args:
            self.port = int(self.args[self.args.index("--port") + 1]) or None
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.args, env=self.env, stdout=log, stderr=log, preexec_fn=self.preexec_fn
            )
        try:
            self._wait_until_serving(timeout)
        except BaseException:
            self.close()  # a gateway that did not start properly is not left running
            raise
        return self

    def _wait_until_serving(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.port is None and (found := _BANNER.search(self.log.read_bytes())):
                self.port = int(found[1])
            if self.port is not None:
                try:
                    with urllib.request.urlopen(self.base_url + "/readyz", timeout=1):
                        return
                except OSError:  # not listening yet, or 503 until its snapshot is loaded
                    pass
            if self.process.poll() is not None:
                raise AssertionError(f"the gateway exited: {self.output()}")
            time.sleep(0.05)
        raise AssertionError(f"the gateway did not start: {self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout)

    def close(self) -> None:
        """SIGTERM, then SIGKILL if it does not go within 20 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def events(self) -> list[UsageEvent]:
        """Every event journaled so far (open and sealed spool files)."""
        return journaled_events(self.spool)

    def wait_for_events(self, count: int, timeout: float = 10) -> list[UsageEvent]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.events()
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.02)
