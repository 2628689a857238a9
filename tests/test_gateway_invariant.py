"""Every call the provider answered has exactly one event, whatever the client sent and
whatever the provider did: checked against the upstream double's own log of what it served,
through the real `spendtrail gateway` process, with raw header bytes no SDK would send.
"""

from __future__ import annotations

import http.client
import json
import time
from dataclasses import dataclass

import openai
import pytest
from factories import gateway_ledger, journaled_events
from gateway_process import GatewayProcess
from gateway_upstream import UpstreamDouble
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from spendtrail.gateway import GatewayConfig, GatewayServer
from spendtrail.gateway.budget import NoBudgets

UPSTREAM_KEY = "sk-upstream-Inv4riant9Inv4riant9Inv4riant9"
MODEL = "gpt-4o-mini"


@pytest.fixture(scope="module")
def upstream():
    double = UpstreamDouble(UPSTREAM_KEY)
    double.url = double.start()
    double.slow_seconds = 0.6  # the gateway's --read-timeout is 0.3
    try:
        yield double
    finally:
        double.stop()


@pytest.fixture(scope="module")
def ledger(tmp_path_factory) -> tuple[str, str]:
    """(ledger url, a production gateway key of support-assistant)."""
    tmp = tmp_path_factory.mktemp("invariant-ledger")
    url = f"sqlite:///{tmp / 'ledger.db'}"
    return url, gateway_ledger(url, tmp)


@pytest.fixture(scope="module")
def gateway(upstream, ledger, tmp_path_factory):
    home = tmp_path_factory.mktemp("invariant-gateway")
    with GatewayProcess(
        ledger[0],
        upstream.url,
        UPSTREAM_KEY,
        home,
        "--read-timeout",
        "0.3",
        "--connect-timeout",
        "2",
    ) as process:
        yield process


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    complete: bool  # the body arrived whole (a stream ended properly)

    def error(self) -> dict:
        assert self.headers["Content-Type"].startswith("application/json"), self.body[:300]
        return json.loads(self.body)["error"]


def send(
    port: int,
    headers: list[tuple[str, bytes]],
    body: bytes | None = None,
    method: str = "POST",
    path: str = "/v1/chat/completions",
) -> Reply:
    """One call with header values sent as raw bytes (http.client passes bytes unchanged)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Type", "application/json")
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        try:
            data, complete = response.read(), True
        except http.client.IncompleteRead as cut:
            data, complete = cut.partial, False
        return Reply(response.status, response.headers, data, complete)
    finally:
        conn.close()


def chat(stream: bool = False, content: str = "Say hello") -> bytes:
    return json.dumps(
        {"model": MODEL, "stream": stream, "messages": [{"role": "user", "content": content}]}
    ).encode()


def settle(
    gateway: GatewayProcess, upstream: UpstreamDouble, served_before: int, events_before: int
) -> tuple[list, list]:
    """The calls served and the events journaled since, once the counts agree (or 5 s)."""
    deadline = time.monotonic() + 5
    while True:
        served = upstream.received[served_before:]
        events = gateway.events()[events_before:]
        if len(events) >= len(served) or time.monotonic() > deadline:
            time.sleep(0.05)  # a second event for the same call would show up now
            return upstream.received[served_before:], gateway.events()[events_before:]
        time.sleep(0.02)


def check_invariant(served: list, events: list) -> None:
    assert len(events) == len(served), (served, [(e.outcome, e.http_status) for e in events])
    served_ids = {call.request_id for call in served}
    assert {e.provider_request_id for e in events} - {None, "caf?"} <= served_ids
    assert len({e.event_id for e in events}) == len(events)


BAD_VALUES = {  # header -> a value that is not UTF-8 (requests sends Latin-1 like this)
    "X-Spendtrail-Job-Id": b"caf\xe9",
    "X-Spendtrail-Tags": b"team=caf\xe9",
    "X-Spendtrail-Workload": b"user_facing\xff",
    "Idempotency-Key": b"retry-\xe9",
    "User-Agent": b"client/1.0 \xe9",
}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("header", [*BAD_VALUES, "Authorization"])
def test_a_header_that_is_not_utf8_is_refused_before_the_provider(
    gateway, upstream, ledger, header, stream
):
    key = ledger[1].encode()
    headers = [("Authorization", b"Bearer " + key)]
    if header == "Authorization":
        headers = [("Authorization", b"Bearer " + key + b"\xe9")]
    else:
        headers.append((header, BAD_VALUES[header]))
    served, journaled = len(upstream.received), len(gateway.events())
    reply = send(gateway.port, headers, chat(stream))
    assert reply.status == 400
    error = reply.error()
    assert (error["param"], error["code"], error["type"]) == (
        header,
        "invalid_header",
        "invalid_request_error",
    )
    assert header in error["message"] and "UTF-8" in error["message"]
    assert key.decode() not in reply.body.decode()
    assert settle(gateway, upstream, served, journaled) == ([], [])


def test_valid_utf8_context_is_served_and_recorded(gateway, upstream, ledger):
    served, journaled = len(upstream.received), len(gateway.events())
    reply = send(
        gateway.port,
        [
            ("Authorization", b"Bearer " + ledger[1].encode()),
            ("X-Spendtrail-Job-Id", "café-7".encode()),
            ("X-Spendtrail-Tags", "team=équipe".encode()),
        ],
        chat(),
    )
    assert reply.status == 200, reply.body
    calls, events = settle(gateway, upstream, served, journaled)
    check_invariant(calls, events)
    [event] = events
    assert (event.context.job_id, event.context.tags) == ("café-7", {"team": "équipe"})
    assert event.event_id == reply.headers["X-Spendtrail-Event-Id"]


@pytest.mark.parametrize(
    "header,value,problem",
    [
        ("X-Spendtrail-Job-Id", "a\u0085b".encode(), "control or format characters"),
        ("Idempotency-Key", "clé".encode(), "printable ASCII"),
        ("Idempotency-Key", b"k" * 256, "at most 255"),
    ],
)
def test_header_charset_and_length_rules(gateway, upstream, ledger, header, value, problem):
    served, journaled = len(upstream.received), len(gateway.events())
    reply = send(
        gateway.port, [("Authorization", b"Bearer " + ledger[1].encode()), (header, value)], chat()
    )
    assert reply.status == 400 and reply.error()["param"] == header
    assert problem in reply.error()["message"]
    assert settle(gateway, upstream, served, journaled) == ([], [])


def test_a_provider_header_that_is_not_utf8_still_gives_one_event(gateway, upstream, ledger):
    """The provider's request id arrives as Latin-1 bytes: the event keeps what it can."""
    upstream.script(MODEL, ["latin1_header"])
    served, journaled = len(upstream.received), len(gateway.events())
    reply = send(gateway.port, [("Authorization", b"Bearer " + ledger[1].encode())], chat())
    assert reply.status == 200 and json.loads(reply.body)["usage"]["prompt_tokens"] == 12
    assert "X-Oneapi-Request-Id" not in reply.headers  # not sendable as it came
    calls, events = settle(gateway, upstream, served, journaled)
    check_invariant(calls, events)
    [event] = events
    assert (event.outcome, event.provider_request_id, event.usage.input_tokens) == (
        "success",
        "caf?",
        12,
    )


class FailingBudgets(NoBudgets):
    """A budget store that fails when a call is settled."""

    def __init__(self) -> None:
        self.recorded: list[str] = []

    def record(self, allocation, event, *args, **kwargs) -> None:
        self.recorded.append(event.event_id)
        raise RuntimeError("budget store failed")


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_a_failure_after_the_provider_answered_neither_loses_the_event_nor_the_answer(
    upstream, ledger, tmp_path, caplog, stream
):
    """The provider has answered and billed: the event is journaled first, and a failure
    after it (here the budget store) is logged, not turned into an error the SDK retries."""
    budgets = FailingBudgets()
    server = GatewayServer(
        GatewayConfig(
            upstream_url=upstream.url,
            upstream_key=UPSTREAM_KEY,
            provider="cometapi",
            ledger_url=ledger[0],
            spool_dir=tmp_path / "spool",
            budget=budgets,
        )
    )
    try:
        base = server.start()
        served = len(upstream.received)
        client = openai.OpenAI(base_url=base + "/v1", api_key=ledger[1], max_retries=0)
        ask = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
        if stream:
            chunks = list(client.chat.completions.create(**ask, stream=True))
            assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello world!"
        else:
            assert client.chat.completions.create(**ask).usage.prompt_tokens == 12
    finally:
        server.stop()
    journaled = journaled_events(tmp_path / "spool")
    assert len(upstream.received) == served + 1 and len(journaled) == 1
    assert journaled[0].event_id == budgets.recorded[0]
    assert "pricing or budget settlement failed" in caplog.text


# -- the property: random headers, bodies and provider behaviours ------------------------------

FAULTS = [
    None,
    None,
    "500",
    "500_text",
    "status_999",
    "echo_key",
    "timeout",
    "reset",
    "malformed",
    "cut",
    "no_done",
    "echo_key_sse",
    "echo_key_body",
    "echo_key_header",
    "latin1_header",
    "truncated",
    "not_http",
    "status_400",
    "status_429",
    "status_503",
]
HEADER_NAMES = [
    "X-Spendtrail-Job-Id",
    "X-Spendtrail-Tags",
    "X-Spendtrail-Workload",
    "X-Spendtrail-Environment",
    "Idempotency-Key",
    "x-stainless-retry-count",
    "User-Agent",
    "X-Anything",
]
# Header bytes http.client lets through: no CR or LF (they would end the header). Plausible
# values come up as often as random ones, so that about half the calls reach the provider.
plausible = st.sampled_from(
    [b"user_facing", b"eval", b"production", b"staging", b"team=a,b=c", b"1", b"0", b"caf\xe9"]
)
header_value = st.one_of(
    plausible,
    plausible,
    st.binary(max_size=30).filter(lambda v: b"\r" not in v and b"\n" not in v),
    st.text(max_size=30).map(str.encode).filter(lambda v: b"\r" not in v and b"\n" not in v),
)
body = st.one_of(
    st.builds(chat, st.booleans(), st.text(max_size=50)),
    st.binary(max_size=40),
    st.sampled_from([b"", b"[1, 2]", b'{"model": 5}', b'{"stream": true}']),
)


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    headers=st.lists(st.tuples(st.sampled_from(HEADER_NAMES), header_value), max_size=2),
    body=body,
    fault=st.sampled_from(FAULTS),
    good_key=st.sampled_from([True, True, True, False]),
    path=st.sampled_from(["/v1/chat/completions"] * 4 + ["/v1/embeddings", "/v1/models"]),
)
def test_every_call_the_provider_served_has_exactly_one_event(
    gateway, upstream, ledger, headers, body, fault, good_key, path
):
    key = ledger[1].encode() if good_key else b"sk-st-not-a-key"
    upstream.script(MODEL, [fault] if fault else [])
    served, journaled = len(upstream.received), len(gateway.events())
    method = "GET" if path == "/v1/models" else "POST"
    reply = send(
        gateway.port,
        [("Authorization", b"Bearer " + key), *headers],
        None if method == "GET" else body,
        method=method,
        path=path,
    )
    upstream.script(MODEL, [])
    calls, events = settle(gateway, upstream, served, journaled)
    event(f"provider served {len(calls)}, gateway answered {reply.status}")
    check_invariant(calls, events)
    assert reply.complete  # whatever happened, the response (or stream) ended properly
    streamed = reply.headers.get("Content-Type", "").startswith("text/event-stream")
    if reply.status >= 400 or not streamed and reply.status != 200:
        assert "error" in json.loads(reply.body)  # the OpenAI error shape, never plain text
    if events:
        assert reply.headers["X-Spendtrail-Event-Id"] == events[0].event_id
    assert UPSTREAM_KEY.encode() not in reply.body
    assert UPSTREAM_KEY not in str(reply.headers)
