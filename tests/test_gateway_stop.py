"""Stopping and starting the real `spendtrail gateway` process.

SIGINT and SIGTERM stop it whatever their disposition at start (a process started from a
shell's background job inherits SIGINT ignored): it stops accepting, lets calls in flight
finish for the grace period, records what is still running as cancelled, and exits 0. A
second gateway on a busy port says so in one line and exits 2 before doing anything else.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import openai
import pytest
from client_threads import ClientThreads
from factories import sqlite_gateway_ledger
from gateway_process import GatewayProcess
from gateway_upstream import UpstreamDouble

UPSTREAM_KEY = "sk-upstream-St0pSt0pSt0pSt0pSt0pSt0p"
GRACE = 3.0
MARGIN = 8.0  # start-up of the exit path (sealing the spool) on a loaded machine


@pytest.fixture
def upstream():
    with UpstreamDouble.serving(UPSTREAM_KEY) as double:
        yield double


@pytest.fixture
def ledger(tmp_path) -> tuple[str, str]:
    return sqlite_gateway_ledger(tmp_path)


class Load(ClientThreads):
    """Client threads calling until the gateway goes away; keeps the event ids received."""

    def __init__(self, base_url: str, key: str, threads: int = 4) -> None:
        self.received: list[str] = []
        self._lock = threading.Lock()
        super().__init__(base_url, key, threads)

    def _run(self, base_url: str, key: str, n: int) -> None:
        client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=30)
        while not self._stop.is_set():
            try:
                raw = client.chat.completions.with_raw_response.create(
                    model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
                )
                raw.parse()
            except (openai.APIConnectionError, openai.APIStatusError):
                return  # the gateway stopped accepting
            with self._lock:
                self.received.append(raw.headers["X-Spendtrail-Event-Id"])

    def wait_for(self, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            assert time.monotonic() < deadline, "the load made no progress"
            time.sleep(0.02)


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize(
    "signum,preexec",
    [
        (signal.SIGTERM, None),
        (signal.SIGINT, None),
        (signal.SIGINT, _ignore_sigint),  # as started from a background job
    ],
    ids=["sigterm", "sigint", "sigint-inherited-ignored"],
)
def test_a_signal_under_load_drains_for_the_grace_period_and_exits(
    upstream, ledger, tmp_path, signum, preexec
):
    url, key = ledger
    args, env = ("--grace", str(GRACE)), None
    if preexec is not None:  # the setting from the environment, this time
        args, env = (), {"SPENDTRAIL_GATEWAY_GRACE": str(GRACE)}
    upstream.release.clear()
    with GatewayProcess(
        url, upstream.url, UPSTREAM_KEY, tmp_path / "home", *args, env=env, preexec_fn=preexec
    ) as gateway:
        client = openai.OpenAI(
            base_url=gateway.base_url + "/v1", api_key=key, max_retries=0, timeout=30
        )
        upstream.script("gpt-4o-mini", ["hold", "slow"])
        held_chunks: list = []
        slow_chunks: list = []

        def stream(into: list) -> None:
            try:
                for chunk in client.chat.completions.create(
                    model="gpt-4o-mini",
                    messages=[{"role": "user", "content": "hi"}],
                    stream=True,
                ):
                    into.append(chunk)
            except openai.APIError as error:
                into.append(error)

        held = threading.Thread(target=stream, args=(held_chunks,))
        held.start()  # outlasts the grace period: the upstream holds it open
        while not held_chunks:
            time.sleep(0.02)
        slow = threading.Thread(target=stream, args=(slow_chunks,))
        slow.start()  # ~2 s of chunks: finishes within the grace period
        while not slow_chunks:
            time.sleep(0.02)
        with Load(gateway.base_url + "/v1", key) as load:
            load.wait_for(30)
            signalled = time.monotonic()
            gateway.signal(signum)
            code = gateway.wait(GRACE + MARGIN)
            elapsed = time.monotonic() - signalled
        held.join(10)
        slow.join(10)
        served = len(upstream.received)
        events = gateway.events()
    assert code == 0, gateway.output()
    assert GRACE * 0.9 <= elapsed <= GRACE + MARGIN  # the held call kept it for the grace
    assert "stopping: no new connections" in gateway.output()
    # The stream that finished within the grace was delivered whole ...
    assert "".join(c.choices[0].delta.content or "" for c in slow_chunks) == "Hello world!" * 8
    # ... the held one was cut when the grace ran out, and recorded as cancelled.
    by_id = {event.event_id: event for event in events}
    assert [e.outcome for e in events if e.http_status == 499] == ["cancelled"]
    # Every call the provider served has exactly one event; every response received has one.
    assert len(events) == len(by_id) == served
    assert set(load.received) <= set(by_id)


@pytest.mark.parametrize("workers", [1, 2], ids=["one-worker", "two-workers"])
def test_a_second_gateway_on_a_busy_port_fails_in_one_line(upstream, ledger, tmp_path, workers):
    url, _ = ledger
    with GatewayProcess(
        url, upstream.url, UPSTREAM_KEY, tmp_path / "first", "--workers", str(workers)
    ) as first:
        other_ledger = tmp_path / "second" / "ledger.db"
        second = GatewayProcess(
            f"sqlite:///{other_ledger}",
            upstream.url,
            UPSTREAM_KEY,
            tmp_path / "second",
            "--port",
            str(first.port),
            "--ingest",
            "--workers",
            str(workers),
        )
        done = subprocess.run(
            second.args, env=second.env, capture_output=True, text=True, timeout=60
        )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"error: cannot listen on 127.0.0.1:{first.port}: Address already in use"
    )
    assert done.stdout == ""
    assert not other_ledger.exists()  # no ledger opened or migrated
    assert not second.spool.exists()  # no spool, no ingester


def test_grace_is_an_option_of_the_command():
    done = subprocess.run(
        [sys.executable, "-m", "spendtrail.cli.app", "gateway", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert "--grace" in done.stdout and "SPENDTRAIL_GATEWAY_GRACE" in done.stdout
