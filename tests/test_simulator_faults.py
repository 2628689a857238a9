"""Simulator faults as a client sees them (the real `openai` SDK on loopback), what each one
leaves in the usage log, seeded reproducibility, and latency."""

from __future__ import annotations

import json
import time

import openai
import pytest
from test_simulator import HELLO, Simulators, raw, read_log, running_simulators, wait_for_rows

from spendtrail.simulator import FAULT_HEADER, SimulatorConfig, SimulatorConfigError
from spendtrail.simulator.app import Simulator

sims_fixture = pytest.fixture(running_simulators, name="sims")


def fault(kind: str) -> dict[str, dict[str, str]]:
    return {"extra_headers": {FAULT_HEADER: kind}}


@pytest.mark.parametrize(("kind", "error", "status"), [
    ("error_500", openai.InternalServerError, 500),
    ("error_502", openai.InternalServerError, 502),
    ("error_503", openai.InternalServerError, 503),
    ("error_429", openai.RateLimitError, 429),
])
@pytest.mark.parametrize("stream", [False, True])
def test_error_faults_answer_openai_errors_and_log_error_rows(sims, kind, error, status, stream):
    url, log = sims.start()
    with pytest.raises(error) as caught:
        sims.client(url).chat.completions.create(
            model="gpt-4o-mini", messages=HELLO, stream=stream, **fault(kind)
        )
    assert caught.value.status_code == status
    assert set(caught.value.body) == {"message", "type", "param", "code"}
    [row] = read_log(log)
    assert (row["type"], row["quota"], row["prompt_tokens"]) == ("5", "0", "0")
    assert row["is_stream"] == ("true" if stream else "false")
    assert row["request_id"] == caught.value.response.headers["X-Oneapi-Request-Id"]


@pytest.mark.parametrize("stream", [False, True])
def test_timeout_holds_past_the_client_timeout_and_is_still_billed(sims, stream):
    # The hold is ten times the client's timeout, so a loaded machine still sees the client
    # give up first (with 0.4 s, one loaded run took 0.435 s to raise).
    url, log = sims.start(timeout_hold_s=1.5)
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        sims.client(url, timeout=0.15).chat.completions.create(
            model="gpt-4o-mini", messages=HELLO, max_tokens=4, stream=stream, **fault("timeout")
        )
    assert time.monotonic() - started < 1.5
    assert read_log(log) == []  # nothing billed while the call is held
    [row] = wait_for_rows(log, 1)
    # The provider finishes the work after the client gave up and bills it; a stream bills
    # what it streamed, and the client was gone before the first chunk.
    assert (row["type"], row["prompt_tokens"]) == ("2", "9")
    assert row["completion_tokens"] == ("0" if stream else "4")


def test_cut_stream_ends_early_and_bills_what_was_streamed(sims):
    url, log = sims.start(cut_after_chunks=3)
    client = sims.client(url)
    received = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in client.chat.completions.create(
            model="gpt-4o-mini", messages=HELLO, max_tokens=10, stream=True,
            stream_options={"include_usage": True}, **fault("cut_stream"),
        ):
            received.append(chunk)
    assert len(received) == 3  # the role chunk and two content chunks
    assert all(chunk.usage is None for chunk in received)
    with pytest.raises(openai.APIConnectionError):
        list(client.chat.completions.create(
            model="o4-mini", messages=HELLO, max_completion_tokens=10, stream=True,
            **fault("cut_stream"),
        ))
    # gpt-4o-mini: 2 content tokens; o4-mini: 5 reasoning tokens + 2 content tokens
    assert [row["completion_tokens"] for row in read_log(log)] == ["2", "7"]


def test_cut_after_everything_still_drops_the_done_marker(sims):
    url, log = sims.start(cut_after_chunks=100)
    received = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in sims.client(url).chat.completions.create(
            model="gpt-4o-mini", messages=HELLO, max_tokens=2, stream=True,
            stream_options={"include_usage": True}, **fault("cut_stream"),
        ):
            received.append(chunk)
    assert received[-1].usage.completion_tokens == 2
    assert read_log(log)[0]["completion_tokens"] == "2"


def test_cut_responses_stream_never_completes(sims):
    url, _ = sims.start(cut_after_chunks=4)
    events = []
    with pytest.raises(openai.APIConnectionError):
        for event in sims.client(url).responses.create(
            model="gpt-4o-mini", input="hi", stream=True, **fault("cut_stream")
        ):
            events.append(event.type)
    assert len(events) == 4 and "response.completed" not in events


def test_cut_of_a_plain_response_truncates_the_body(sims):
    url, log = sims.start()
    with pytest.raises(openai.APIConnectionError):
        sims.client(url).chat.completions.create(
            model="gpt-4o-mini", messages=HELLO, max_tokens=6, **fault("cut_stream")
        )
    assert read_log(log)[0]["completion_tokens"] == "6"  # generated in full, so billed in full


def test_client_leaving_a_stream_is_billed_for_what_it_received(sims):
    url, log = sims.start(chunk_delay_ms=10)
    stream = sims.client(url).chat.completions.create(
        model="gpt-4o-mini", messages=HELLO, max_tokens=200, stream=True
    )
    for index, _ in enumerate(stream):
        if index == 5:
            break
    stream.close()
    [row] = wait_for_rows(log, 1)
    assert 5 <= int(row["completion_tokens"]) < 200


@pytest.mark.parametrize("stream", [False, True])
def test_malformed_json_breaks_the_sdk_parse(sims, stream):
    url, log = sims.start()
    with pytest.raises(json.JSONDecodeError):
        result = sims.client(url).chat.completions.create(
            model="gpt-4o-mini", messages=HELLO, stream=stream, **fault("malformed_json")
        )
        if stream:
            list(result)
    assert read_log(log)[0]["type"] == "2"  # the provider thinks it answered


def test_oversized_bodies_are_valid_and_large(sims):
    url, log = sims.start(oversized_bytes=300_000)
    client = sims.client(url)
    response = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=HELLO, max_tokens=3, **fault("oversized")
    )
    assert len(response.content) > 300_000
    assert response.parse().usage.completion_tokens == 3
    status, _, body = raw(url, "/v1/chat/completions", {
        "model": "gpt-4o-mini", "messages": HELLO, "max_tokens": 3, "stream": True,
    }, headers={FAULT_HEADER: "oversized"})
    assert status == 200 and len(body) > 300_000 and body.endswith(b"data: [DONE]\n\n")
    assert [row["completion_tokens"] for row in read_log(log)] == ["3", "3"]


def test_reset_drops_the_connection_and_logs_nothing(sims):
    url, log = sims.start()
    with pytest.raises(openai.APIConnectionError):
        sims.client(url).chat.completions.create(
            model="gpt-4o-mini", messages=HELLO, **fault("reset")
        )
    with pytest.raises(ConnectionResetError):
        raw(url, "/v1/embeddings", {"model": "text-embedding-3-small", "input": "a"},
            headers={FAULT_HEADER: "reset"})
    assert read_log(log) == []


def test_fault_header_none_overrides_rates_and_unknown_kinds_are_refused(sims):
    url, log = sims.start(fault_rates={"error_500": 1.0})
    client = sims.client(url)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, **fault("none"))
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, **fault("gremlins"))
    assert caught.value.body["param"] == FAULT_HEADER
    assert [row["type"] for row in read_log(log)] == ["5", "2"]


def _outcomes(sims: Simulators, seed: int) -> list[str]:
    url, _ = sims.start(seed=seed, fault_rates={"error_500": 0.3, "error_429": 0.2})
    client = sims.client(url)
    seen = []
    for _ in range(30):
        try:
            client.embeddings.create(model="text-embedding-3-small", input="a")
            seen.append("ok")
        except openai.APIStatusError as exc:
            seen.append(str(exc.status_code))
    return seen


def test_fault_rates_are_seeded_and_reproducible(sims):
    first, again, other = _outcomes(sims, 7), _outcomes(sims, 7), _outcomes(sims, 8)
    assert first == again
    assert first != other
    assert set(first) == {"ok", "500", "429"}


def test_latency_and_stream_pacing(sims):
    url, _ = sims.start(latency_ms=60, ttft_ms=40, chunk_delay_ms=10)
    client = sims.client(url)
    started = time.monotonic()
    client.embeddings.create(model="text-embedding-3-small", input="a")
    assert time.monotonic() - started >= 0.06
    started = time.monotonic()
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=HELLO, max_tokens=5, stream=True
    )
    next(iter(stream))
    first = time.monotonic() - started
    list(stream)
    total = time.monotonic() - started
    assert first >= 0.1  # latency + time to first token
    assert total >= 0.1 + 7 * 0.01  # role, 5 tokens, finish, [DONE]: 7 gaps after the first


def test_jitter_draws_are_seeded_and_bounded():
    def delays(seed: int) -> list[float]:
        simulator = Simulator(SimulatorConfig(latency_ms=5, jitter_ms=40, seed=seed))
        return [simulator._delay_s() for _ in range(20)]

    first = delays(3)
    assert first == delays(3) != delays(4)
    assert all(0.005 <= delay < 0.045 for delay in first) and len(set(first)) == 20


@pytest.mark.parametrize(("settings", "message"), [
    ({"fault_rates": {"gremlins": 0.1}}, "unknown fault 'gremlins'"),
    ({"fault_rates": {"error_500": 0.6, "reset": 0.6}}, "add up to more than 1"),
    ({"fault_rates": {"reset": 1.5}}, "between 0 and 1"),
    ({"latency_ms": -1}, "latency_ms: must not be negative"),
    ({"access_token": ""}, "access_token"),
    ({"stream_chunk_tokens": 0}, "stream_chunk_tokens"),
])
def test_bad_settings_are_refused(settings, message):
    with pytest.raises(SimulatorConfigError, match=message):
        SimulatorConfig(**settings)
