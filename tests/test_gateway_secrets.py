"""No secret escapes the gateway: a canary provider key, a canary gateway key and a canary
prompt go through every path of the real `spendtrail gateway` process, in front of a provider
that echoes its key wherever it can (error bodies, SSE error events, 2xx bodies, headers).
Then the ledger file, the spool, the gateway's own output, every response a client saw and
the exports are searched for them.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import openai
import pytest
from factories import gateway_ledger
from gateway_process import GatewayProcess
from gateway_upstream import UpstreamDouble

from spendtrail.journal.intents import is_intent
from spendtrail.redact import RedactingFilter, StreamMask, mask

PROVIDER_KEY = "sk-canaryPROVIDERkey0c4n4ry0c4n4ry0c4n4ry"
PROMPT = "canary-prompt-5e1f: what is the admin password?"


def raw_call(port: int, head: bytes) -> bytes:
    """A request written straight to the socket; returns the whole response."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        chunks = []
        while data := sock.recv(65536):
            chunks.append(data)
    return b"".join(chunks)


def test_canary_keys_and_prompt_never_leave_the_gateway(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    gateway_key = gateway_ledger(url, tmp_path)
    double = UpstreamDouble(PROVIDER_KEY)
    seen: list[bytes] = []  # everything a client received: bodies, headers, stream bytes
    try:
        upstream = double.start()
        with GatewayProcess(
            url, upstream, PROVIDER_KEY, tmp_path / "home", "--ingest", "--read-timeout", "2"
        ) as gateway:
            client = openai.OpenAI(
                base_url=gateway.base_url + "/v1", api_key=gateway_key, max_retries=0
            )
            ask = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": PROMPT}]}

            def call(fault: str | None, stream: bool = False) -> None:
                double.script("gpt-4o-mini", [fault] if fault else [])
                try:
                    if stream:
                        with client.chat.completions.with_streaming_response.create(
                            **ask, stream=True
                        ) as response:
                            seen.append(str(response.headers).encode())
                            seen.extend(response.iter_bytes())
                    else:
                        raw = client.chat.completions.with_raw_response.create(**ask)
                        seen.append(str(raw.headers).encode() + raw.content)
                except openai.APIStatusError as error:
                    seen.append(str(error.response.headers).encode() + error.response.content)
                    seen.append(str(error).encode())

            for fault in (None, "echo_key", "echo_key_body", "echo_key_header", "500_text"):
                call(fault)
            for fault in (None, "echo_key_sse", "echo_key_header", "cut"):
                call(fault, stream=True)
            # A 9 kB Authorization header: aiohttp's own limit, answered without an echo.
            oversized = raw_call(
                gateway.port,
                (
                    f"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n"
                    f"Authorization: Bearer {gateway_key}{'x' * 9000}\r\n"
                    f"Content-Length: 2\r\n\r\n{{}}"
                ).encode(),
            )
            seen.append(oversized)
            head, _, body = oversized.partition(b"\r\n\r\n")
            assert head.split(b" ")[1] == b"431"
            assert json.loads(body)["error"]["code"] == "request_header_too_large"
            # The gateway key with bytes that are not UTF-8: refused, and not echoed.
            refused = raw_call(
                gateway.port,
                (
                    b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n"
                    b"Authorization: Bearer " + gateway_key.encode() + b"\xe9\r\n"
                    b"Content-Length: 2\r\n\r\n{}"
                ),
            )
            seen.append(refused)
            assert refused.split(b" ")[1] == b"400"
            served = len(double.received)
            gateway.signal(signal.SIGTERM)  # seals the spool and ingests it into the ledger
            assert gateway.wait(30) == 0
            log = gateway.log.read_bytes()
    finally:
        double.stop()

    assert served == 9  # every call above that carried a valid key reached the provider
    assert b"request_header_too_large" in log  # the refusal is logged, the header is not
    spool = b"".join(path.read_bytes() for path in gateway.spool.rglob("*.jsonl*"))
    events = [line for line in spool.splitlines() if line.strip() and not is_intent(line)]
    assert len(events) == served
    exports = run_exports(url, tmp_path)
    places = {
        "ledger": (tmp_path / "ledger.db").read_bytes(),
        "spool": spool,
        "gateway output": log,
        "client responses": b"\n".join(seen),
        **exports,
    }
    for name, data in places.items():
        assert PROVIDER_KEY.encode() not in data, name
        assert gateway_key.encode() not in data, name
        assert gateway_key[:20].encode() not in data, name  # not even a long prefix
    for name in ("ledger", "spool", *exports):
        assert PROMPT.encode() not in places[name], name
    assert b"<redacted>" in places["client responses"]  # the echoes were there, masked
    assert b"support-assistant" in exports["costs"]  # the exports did cover the calls


def run_exports(url: str, tmp_path: Path) -> dict[str, bytes]:
    env = {
        **os.environ,
        "SPENDTRAIL_DATABASE_URL": url,
        "SPENDTRAIL_HOME": str(tmp_path),
        "COLUMNS": "200",
    }
    period = datetime.now(UTC).strftime("%Y-%m")
    focus = tmp_path / "focus.csv"
    outputs = {}
    for name, args in (
        ("focus export", ["export", "focus", "--period", period, "--output", str(focus)]),
        ("chargeback", ["report", "chargeback", "--period", period, "--format", "json"]),
        ("costs", ["costs", "--period", period, "--format", "json"]),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "spendtrail.cli.app", *args],
            env=env,
            capture_output=True,
            timeout=120,
        )
        assert done.returncode in (0, 1), done.stderr  # 1: some usage is unpriced
        outputs[name] = done.stdout + done.stderr
    outputs["focus export"] += focus.read_bytes()
    return outputs


# -- the redaction parts -------------------------------------------------------------------


def test_mask_and_stream_mask_find_a_key_split_across_pieces():
    key = PROVIDER_KEY.encode()
    assert mask(b"a " + key + b" b", key) == b"a <redacted> b"
    body = b"x" * 100 + key + b"y" * 50 + key
    for cut in range(0, len(body), 7):  # every way of splitting the body in pieces
        masker = StreamMask(key)
        pieces = [
            masker.feed(body[i : i + cut or len(body)])
            for i in range(0, len(body), cut or len(body))
        ]
        out = b"".join(pieces) + masker.flush()
        assert out == b"x" * 100 + b"<redacted>" + b"y" * 50 + b"<redacted>"


def test_log_records_are_redacted_with_their_tracebacks(caplog):
    logger = logging.getLogger("spendtrail.test.redaction")
    guard = RedactingFilter()
    guard.secrets.add(PROVIDER_KEY)
    logger.addFilter(guard)
    try:
        try:
            raise ValueError(f"bad header b'Bearer sk-st-{'A' * 43}' with {PROVIDER_KEY}")
        except ValueError:
            logger.exception("failed with %s", PROVIDER_KEY)
    finally:
        logger.removeFilter(guard)
    assert "failed with <redacted>" in caplog.text
    assert PROVIDER_KEY not in caplog.text and "sk-st-AAAA" not in caplog.text
    assert "ValueError: bad header" in caplog.text


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
