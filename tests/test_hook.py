"""spendtrail.instrument on the real openai SDK (sync client) against the provider simulator
on loopback: one event per HTTP attempt, the caller's view unchanged, events that ingest and
match the provider's own usage log.

The helpers at the top are shared with test_hook_async.py."""

from __future__ import annotations

import csv
import json
import socket
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import openai
import pytest
import sqlalchemy as sa
from factories import journaled_events

import spendtrail
from spendtrail.events import AllocationContext, Usage
from spendtrail.hook import HookError, provider_for
from spendtrail.journal.spool import Spool
from spendtrail.ledger.ingest import Ingester
from spendtrail.ledger.schema import events as events_table
from spendtrail.settings import Settings
from spendtrail.simulator import SimulatorConfig, serve_in_thread

KEY = "sk-hook-test-0123456789abcdefWXYZ"
PROMPT = "Tell me a story about a secret lighthouse"
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": PROMPT}]}
SIMULATOR = dict(cut_after_chunks=2, timeout_hold_s=2.0)


@dataclass
class Upstream:
    url: str
    log: Path

    def rows(self, count: int) -> dict[str, dict[str, str]]:
        """The provider's usage log, by its request id (our provider_request_id), once it has
        `count` rows (the simulator writes a row when a call has ended on its side, which may
        be after the client has its last byte) or 5 s have passed."""
        deadline = time.monotonic() + 5
        while True:
            with self.log.open(newline="", encoding="utf-8") as handle:
                rows = {row["request_id"]: row for row in csv.DictReader(handle)}
            if len(rows) >= count or time.monotonic() > deadline:
                return rows
            time.sleep(0.02)


def raw_journal(directory: Path) -> bytes:
    return b"".join(path.read_bytes() for path in sorted(directory.glob("*.jsonl*")))


class Tap(httpx2.BaseTransport):
    """Forwards to the real transport and keeps each request as it is sent."""

    def __init__(self, inner: httpx2.BaseTransport) -> None:
        self.inner = inner
        self.sent: list[tuple[list[tuple[str, str]], bytes]] = []

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        self.sent.append((list(request.headers.items()), request.read()))
        return self.inner.handle_request(request)


def tapped(client):
    """Put a tap where the network starts; instrument() later wraps around it."""
    tap = Tap(client._client._transport)
    client._client._transport = tap
    return tap


class _Compressed(httpx2.SyncByteStream):
    def __init__(self, inner: httpx2.SyncByteStream) -> None:
        self.inner = inner

    def __iter__(self) -> Iterator[bytes]:
        gzip = zlib.compressobj(wbits=31)
        for data in self.inner:
            yield gzip.compress(data) + gzip.flush(zlib.Z_SYNC_FLUSH)
        yield gzip.flush()

    def close(self) -> None:
        self.inner.close()


class Gzip(httpx2.BaseTransport):
    """Gzips every response body piece by piece, as a provider behind a CDN may."""

    def __init__(self, inner: httpx2.BaseTransport) -> None:
        self.inner = inner

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        response = self.inner.handle_request(request)
        headers = [(name, value) for name, value in response.headers.raw
                   if name.lower() != b"content-length"]
        return httpx2.Response(response.status_code, headers=[
            *headers, (b"Content-Encoding", b"gzip")], stream=_Compressed(response.stream),
            extensions=response.extensions)


def without_ids(item: dict) -> dict:
    """A chunk or body without what differs from one call to the next."""
    return {k: v for k, v in item.items() if k not in ("id", "created", "created_at")}


def running_upstream(tmp_path: Path) -> Iterator[Upstream]:
    """The `upstream` fixture: a simulator with its usage log."""
    log = tmp_path / "provider-log.csv"
    with serve_in_thread(SimulatorConfig(usage_log=log, **SIMULATOR)) as url:
        yield Upstream(url, log)


def open_spool(tmp_path: Path) -> Iterator[Spool]:
    """The `spool` fixture: the journal the hook writes to, closed after the test."""
    with Spool(tmp_path / "spool") as opened:
        yield opened


upstream = pytest.fixture(running_upstream, name="upstream")
spool = pytest.fixture(open_spool, name="spool")


def plain(upstream, **options) -> openai.OpenAI:
    options.setdefault("max_retries", 0)
    options.setdefault("timeout", 5)
    return openai.OpenAI(base_url=upstream.url, api_key=KEY, **options)


def hooked(upstream, spool, **options) -> openai.OpenAI:
    return spendtrail.instrument(
        plain(upstream, **options), application="search-summaries", environment="production",
        workload_class="batch", job_id="nightly-42", tags={"team": "search"},
        provider="cometapi", spool=spool)


# -- what is recorded ----------------------------------------------------------------------------


def test_a_chat_call_is_one_event_with_the_gateways_fields(upstream, spool):
    client = hooked(upstream, spool)
    raw = client.chat.completions.with_raw_response.create(**CHAT)
    completion = raw.parse()
    [event] = journaled_events(spool.directory)  # written before create() returned

    assert event.source == "hook" and event.provider == "cometapi"
    assert (event.endpoint, event.model_requested, event.model_served) == (
        "/v1/chat/completions", "gpt-4o-mini", "gpt-4o-mini")
    assert (event.http_status, event.outcome, event.attempt) == (200, "success", 1)
    assert event.started_at <= event.ended_at
    assert event.provider_request_id == raw.headers["X-Oneapi-Request-Id"]
    assert event.response_id == completion.id
    assert event.usage == Usage(input_tokens=completion.usage.prompt_tokens,
                                output_tokens=completion.usage.completion_tokens, requests=1)
    assert event.raw_usage == json.loads(raw.http_response.content)["usage"]
    assert event.context == AllocationContext(
        application="search-summaries", environment="production", workload_class="batch",
        job_id="nightly-42", tags={"team": "search"})
    assert event.gateway_key_id is None


def test_nothing_else_reaches_the_provider_and_no_secret_or_content_is_journaled(
    upstream, spool
):
    bare = plain(upstream)
    bare_tap = tapped(bare)
    client = plain(upstream)
    tap = tapped(client)
    spendtrail.instrument(client, application="search-summaries", spool=spool)
    for each in (bare, client):
        each.chat.completions.create(**CHAT)
        each.embeddings.create(model="text-embedding-3-small", input=PROMPT)
    assert [body for _, body in tap.sent] == [body for _, body in bare_tap.sent]
    assert [headers for headers, _ in tap.sent] == [headers for headers, _ in bare_tap.sent]

    written = raw_journal(spool.directory)
    assert KEY.encode() not in written and b"lighthouse" not in written
    assert b"lorem" not in written  # the simulator's reply text


def test_a_stream_the_caller_reads_looks_as_if_uninstrumented(upstream, spool):
    bare = plain(upstream)
    bare_tap = tapped(bare)
    client = plain(upstream)
    tap = tapped(client)
    spendtrail.instrument(client, application="search-summaries", spool=spool)

    expected = [without_ids(c.to_dict()) for c in bare.chat.completions.create(
        **CHAT, stream=True)]
    stream = client.chat.completions.create(**CHAT, stream=True)
    seen = [without_ids(chunk.to_dict()) for chunk in stream]
    [event] = journaled_events(spool.directory)

    assert seen == expected and all(chunk["choices"] for chunk in seen)
    assert all("usage" not in chunk for chunk in seen)
    # Usage was asked for upstream, and only that changed in what was sent.
    [(_, sent)] = tap.sent
    [(_, asked)] = bare_tap.sent
    assert json.loads(sent) == {**json.loads(asked), "stream_options": {"include_usage": True}}
    assert (event.http_status, event.outcome) == (200, "success")
    assert event.usage.input_tokens > 0 and event.usage.output_tokens == len(expected) - 2
    assert event.response_id.startswith("chatcmpl-") and event.model_served == "gpt-4o-mini"


def test_a_stream_that_asked_for_usage_keeps_its_usage_chunk(upstream, spool):
    options = {"stream": True, "stream_options": {"include_usage": True}}
    expected = [without_ids(c.to_dict())
                for c in plain(upstream).chat.completions.create(**CHAT, **options)]
    client = hooked(upstream, spool)
    chunks = list(client.chat.completions.create(**CHAT, **options))
    [event] = journaled_events(spool.directory)

    assert [without_ids(chunk.to_dict()) for chunk in chunks] == expected
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert (event.usage.input_tokens, event.usage.output_tokens) == (
        last.usage.prompt_tokens, last.usage.completion_tokens)


def test_compressed_responses_are_metered_and_reach_the_caller_intact(upstream, spool):
    bare = plain(upstream)
    bare._client._transport = Gzip(bare._client._transport)
    client = plain(upstream)
    client._client._transport = Gzip(client._client._transport)
    spendtrail.instrument(client, application="search-summaries", spool=spool)
    for each in (bare, client):
        assert each.with_raw_response.models.list().headers["Content-Encoding"] == "gzip"

    expected = [without_ids(c.to_dict()) for c in bare.chat.completions.create(
        **CHAT, stream=True)]
    seen = [without_ids(c.to_dict()) for c in client.chat.completions.create(**CHAT, stream=True)]
    completion = client.chat.completions.create(**CHAT)
    _, streamed, answered = journaled_events(spool.directory)
    assert seen == expected
    assert streamed.usage == answered.usage and answered.usage.output_tokens == (
        completion.usage.completion_tokens) > 0


def test_embeddings_responses_and_images(upstream, spool):
    client = hooked(upstream, spool)
    embedding = client.embeddings.create(model="text-embedding-3-small", input=PROMPT)
    response = client.responses.create(model="gpt-4o-mini", input=PROMPT)
    streamed = list(client.responses.create(model="gpt-4o-mini", input=PROMPT, stream=True))
    images = client.images.generate(model="dall-e-3", prompt="a lighthouse", n=2)
    embedded, answered, streamed_event, drawn = journaled_events(spool.directory)

    assert embedded.endpoint == "/v1/embeddings"
    assert embedded.usage == Usage(input_tokens=embedding.usage.prompt_tokens, requests=1)
    assert answered.endpoint == "/v1/responses" and answered.response_id == response.id
    assert (answered.usage.input_tokens, answered.usage.output_tokens) == (
        response.usage.input_tokens, response.usage.output_tokens)
    completed = streamed[-1]
    assert completed.type == "response.completed"
    assert streamed_event.response_id == completed.response.id
    assert streamed_event.usage.output_tokens == completed.response.usage.output_tokens
    assert drawn.endpoint == "/v1/images/generations" and len(images.data) == 2
    assert (drawn.usage.images, drawn.usage.requests) == (2, 1)
    assert all(e.outcome == "success" for e in journaled_events(spool.directory))


# -- retries and failures ----------------------------------------------------------------------


@pytest.mark.parametrize("fault,status", [("error_500", 500), ("error_429", 429)])
def test_sdk_retries_are_one_event_each_linked_into_one_request(upstream, spool, fault, status):
    client = hooked(upstream, spool, max_retries=2)
    with pytest.raises(openai.APIStatusError) as raised:
        client.chat.completions.create(**CHAT, extra_headers={"X-Simulator-Fault": fault})
    assert raised.value.status_code == status
    recorded = journaled_events(spool.directory)
    assert [e.attempt for e in recorded] == [1, 2, 3]
    assert len({e.request_id for e in recorded}) == 1
    assert len({e.event_id for e in recorded}) == 3
    assert {(e.http_status, e.outcome) for e in recorded} == {
        (status, "upstream_error" if status == 500 else "client_error")}
    rows = upstream.rows(3)
    assert {e.provider_request_id for e in recorded} == set(rows)
    assert {row["type"] for row in rows.values()} == {"5"}


def test_a_retry_that_succeeds_joins_its_failed_attempts(tmp_path, spool):
    log = tmp_path / "provider-log.csv"
    config = SimulatorConfig(usage_log=log, fault_rates={"error_503": 0.5}, seed=7)
    with serve_in_thread(config) as url:
        client = hooked(Upstream(url, log), spool, max_retries=4)
        for _ in range(10):  # the seeded draws decide when a call needs a retry
            client.chat.completions.create(**CHAT)
            if journaled_events(spool.directory)[-1].attempt > 1:
                break
    recorded = journaled_events(spool.directory)
    last = recorded[-1]
    attempts = [e for e in recorded if e.request_id == last.request_id]
    assert [e.attempt for e in attempts] == list(range(1, len(attempts) + 1))
    assert len(attempts) > 1
    assert [e.http_status for e in attempts] == [503] * (len(attempts) - 1) + [200]
    assert len({e.request_id for e in recorded}) == len([e for e in recorded if e.attempt == 1])


def test_concurrent_identical_calls_keep_their_retries_apart(upstream, spool):
    client = hooked(upstream, spool, max_retries=1)

    def call() -> None:
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(**CHAT, extra_headers={"X-Simulator-Fault":
                                                                  "error_500"})

    threads = [threading.Thread(target=call) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    by_request: dict[str, list[int]] = {}
    for event in journaled_events(spool.directory):
        by_request.setdefault(event.request_id, []).append(event.attempt)
    assert sorted(sorted(a) for a in by_request.values()) == [[1, 2]] * 3


def test_an_idempotency_key_names_the_request(upstream, spool):
    client = hooked(upstream, spool)
    for _ in range(2):
        client.chat.completions.create(**CHAT, extra_headers={"Idempotency-Key": "job-7-row-1"})
    first, second = journaled_events(spool.directory)
    assert first.request_id == second.request_id and first.request_id.startswith("ik-")


def test_a_cut_stream_is_recorded_when_it_breaks(upstream, spool):
    client = hooked(upstream, spool)
    received = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in client.chat.completions.create(
            **CHAT, stream=True, extra_headers={"X-Simulator-Fault": "cut_stream"}
        ):
            received.append(chunk)
    [event] = journaled_events(spool.directory)
    assert len(received) == 2
    assert (event.http_status, event.outcome) == (502, "upstream_error")
    # The usage of a chat stream comes last, so none was known; the provider bills the prompt
    # and what it streamed, which reconciliation sees in its log.
    assert event.usage == Usage() and event.response_id == received[0].id
    row = upstream.rows(1)[event.provider_request_id]
    assert int(row["prompt_tokens"]) > 0 and row["type"] == "2"


def test_an_abandoned_stream_is_recorded_when_it_closes(tmp_path, spool):
    log = tmp_path / "provider-log.csv"
    with serve_in_thread(SimulatorConfig(usage_log=log, chunk_delay_ms=20)) as url:
        client = hooked(Upstream(url, log), spool)
        stream = client.responses.create(model="gpt-4o-mini", input=PROMPT, stream=True)
        first = next(iter(stream))
        assert journaled_events(spool.directory) == []
        stream.close()
    [event] = journaled_events(spool.directory)
    assert (event.http_status, event.outcome) == (499, "cancelled")
    assert event.response_id == first.response.id and event.model_served == "gpt-4o-mini"


def test_connection_refused_is_an_event_per_attempt_without_status(spool):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    client = spendtrail.instrument(
        openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, max_retries=1),
        application="search-summaries", spool=spool)
    with pytest.raises(openai.APIConnectionError):
        client.embeddings.create(model="text-embedding-3-small", input=PROMPT)
    recorded = journaled_events(spool.directory)
    assert [(e.attempt, e.http_status, e.outcome) for e in recorded] == [
        (1, None, "upstream_error"), (2, None, "upstream_error")]
    assert recorded[0].request_id == recorded[1].request_id
    assert recorded[0].provider == "openai-compatible"
    assert recorded[0].model_requested == "text-embedding-3-small"


def test_a_timeout_is_an_event_without_status(upstream, spool):
    client = hooked(upstream, spool, timeout=0.3)
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(**CHAT, extra_headers={"X-Simulator-Fault": "timeout"})
    [event] = journaled_events(spool.directory)
    assert (event.http_status, event.outcome, event.usage) == (None, "timeout", Usage())


def test_a_malformed_body_is_an_upstream_error(upstream, spool):
    client = hooked(upstream, spool)
    with pytest.raises(json.JSONDecodeError):
        client.chat.completions.create(
            **CHAT, extra_headers={"X-Simulator-Fault": "malformed_json"})
    [event] = journaled_events(spool.directory)
    assert (event.http_status, event.outcome) == (502, "upstream_error")


def test_an_unmetered_call_from_a_derived_client_is_recorded_without_usage(upstream, spool):
    models = hooked(upstream, spool).with_options(timeout=9).models.list()
    [event] = journaled_events(spool.directory)
    assert [m.id for m in models] and event.endpoint == "/v1/models"
    assert (event.http_status, event.outcome, event.usage) == (200, "success", Usage())
    assert event.context.job_id == "nightly-42"


# -- into the ledger ---------------------------------------------------------------------------


def test_events_ingest_and_match_the_provider_log(upstream, tmp_path, ledger):
    with Spool(tmp_path / "spool") as spool:
        client = hooked(upstream, spool)
        client.chat.completions.create(**CHAT)
        list(client.chat.completions.create(**CHAT, stream=True))
        client.embeddings.create(model="text-embedding-3-small", input=PROMPT)
        client.responses.create(model="gpt-4o-mini", input=PROMPT)
        client.images.generate(model="dall-e-3", prompt="a lighthouse")
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(**CHAT,
                                           extra_headers={"X-Simulator-Fault": "error_500"})
    report = Ingester(ledger).ingest_spool(tmp_path / "spool")
    assert (report.read, report.inserted, report.rejected) == (6, 6, [])

    with ledger.connect() as conn:
        rows = conn.execute(sa.select(events_table)).mappings().all()
    provider = upstream.rows(6)
    assert {row["provider_request_id"] for row in rows} == set(provider)
    for row in rows:
        logged = provider[row["provider_request_id"]]
        usage = json.loads(row["usage"])
        assert row["source"] == "hook" and row["job_id"] == "nightly-42"
        if logged["type"] == "2":
            assert row["outcome"] == "success"
            assert usage.get("input_tokens", 0) == int(logged["prompt_tokens"])
            assert usage.get("output_tokens", 0) == int(logged["completion_tokens"])
        else:
            assert (row["http_status"], row["outcome"]) == (500, "upstream_error")


# -- setting it up -----------------------------------------------------------------------------


def test_the_default_spool_is_the_settings_one(upstream):
    client = spendtrail.instrument(plain(upstream), application="search-summaries")
    client.chat.completions.create(**CHAT)
    [event] = journaled_events(Settings().spool)
    assert event.context.application == "search-summaries" and event.provider == (
        "openai-compatible")


def test_bad_arguments_are_refused_before_any_call(upstream, spool):
    with pytest.raises(HookError, match="application"):
        spendtrail.instrument(plain(upstream), application="", spool=spool)
    with pytest.raises(HookError, match="tags"):
        spendtrail.instrument(plain(upstream), application="a", tags={"k": 1}, spool=spool)
    with pytest.raises(HookError, match="openai.OpenAI"):
        spendtrail.instrument(object(), application="a", spool=spool)
    client = spendtrail.instrument(plain(upstream), application="a", spool=spool)
    with pytest.raises(HookError, match="already instrumented"):
        spendtrail.instrument(client.with_options(timeout=9), application="b", spool=spool)


@pytest.mark.parametrize("host,provider", [
    ("api.cometapi.com", "cometapi"), ("api.openai.com", "openai"), ("API.OpenAI.com.", "openai"),
    ("127.0.0.1", "openai-compatible"), ("notopenai.com", "openai-compatible"),
])
def test_the_provider_follows_the_base_url(host, provider):
    assert provider_for(host) == provider

