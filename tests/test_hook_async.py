"""spendtrail.instrument on the real AsyncOpenAI client against the provider simulator: the
same events as the sync client, with the SDK's httpx2 transport and with its aiohttp one."""

from __future__ import annotations

import asyncio

import openai
import pytest
from factories import journaled_events
from test_hook import CHAT, KEY, PROMPT, open_spool, running_upstream, without_ids

import spendtrail
from spendtrail.events import Usage
from spendtrail.simulator import SimulatorConfig, serve_in_thread

upstream = pytest.fixture(running_upstream, name="upstream")
spool = pytest.fixture(open_spool, name="spool")


def plain(url: str, **options) -> openai.AsyncOpenAI:
    options.setdefault("max_retries", 0)
    return openai.AsyncOpenAI(base_url=url, api_key=KEY, timeout=5, **options)


def hooked(url: str, spool, **options) -> openai.AsyncOpenAI:
    return spendtrail.instrument(plain(url, **options), application="search-summaries",
                                 environment="production", provider="cometapi", spool=spool)


@pytest.mark.parametrize("http", ["httpx2", "aiohttp"])
def test_chat_streamed_and_not_with_either_http_client(upstream, spool, http):
    async def calls():
        def options():
            return {"http_client": openai.DefaultAioHttpClient()} if http == "aiohttp" else {}

        async with plain(upstream.url, **options()) as bare:
            expected = [without_ids(c.to_dict())
                        async for c in await bare.chat.completions.create(**CHAT, stream=True)]
        async with hooked(upstream.url, spool, **options()) as client:
            completion = await client.chat.completions.create(**CHAT)
            seen = [without_ids(c.to_dict())
                    async for c in await client.chat.completions.create(**CHAT, stream=True)]
            embedding = await client.embeddings.create(model="text-embedding-3-small",
                                                       input=PROMPT)
        return completion, expected, seen, embedding

    completion, expected, seen, embedding = asyncio.run(calls())
    answered, streamed, embedded = journaled_events(spool.directory)
    assert seen == expected
    assert answered.response_id == completion.id
    assert (answered.usage.input_tokens, answered.usage.output_tokens) == (
        completion.usage.prompt_tokens, completion.usage.completion_tokens)
    assert streamed.usage == answered.usage  # the same request, deterministic usage
    assert (streamed.http_status, streamed.outcome) == (200, "success")
    assert embedded.usage == Usage(input_tokens=embedding.usage.prompt_tokens, requests=1)
    rows = upstream.rows(3)
    assert {e.provider_request_id for e in (answered, streamed, embedded)} <= set(rows)
    assert all(e.source == "hook" and e.provider == "cometapi" for e in (answered, embedded))


def test_concurrent_identical_calls_keep_their_retries_apart(upstream, spool):
    async def calls():
        async with hooked(upstream.url, spool, max_retries=1) as client:
            faulted = {"X-Simulator-Fault": "error_429"}
            return await asyncio.gather(
                *(client.chat.completions.create(**CHAT, extra_headers=faulted)
                  for _ in range(4)),
                return_exceptions=True)

    results = asyncio.run(calls())
    assert all(isinstance(r, openai.RateLimitError) for r in results)
    by_request: dict[str, list[int]] = {}
    for event in journaled_events(spool.directory):
        assert (event.http_status, event.outcome) == (429, "client_error")
        by_request.setdefault(event.request_id, []).append(event.attempt)
    assert sorted(sorted(a) for a in by_request.values()) == [[1, 2]] * 4


def test_an_abandoned_stream_and_a_cancelled_call(tmp_path, spool):
    log = tmp_path / "provider-log.csv"

    async def calls(url):
        async with hooked(url, spool) as client:
            stream = await client.chat.completions.create(**CHAT, stream=True)
            async for _ in stream:
                break
            await stream.close()
            slow = asyncio.create_task(client.chat.completions.create(
                **CHAT, extra_headers={"X-Simulator-Fault": "timeout"}))
            await asyncio.sleep(0.2)
            slow.cancel()
            with pytest.raises(asyncio.CancelledError):
                await slow

    with serve_in_thread(SimulatorConfig(usage_log=log, chunk_delay_ms=20,
                                         timeout_hold_s=1.0)) as url:
        asyncio.run(calls(url))
    abandoned, cancelled = journaled_events(spool.directory)
    assert (abandoned.http_status, abandoned.outcome) == (499, "cancelled")
    assert abandoned.response_id.startswith("chatcmpl-")
    assert (cancelled.http_status, cancelled.outcome, cancelled.usage) == (
        499, "cancelled", Usage())


def test_a_cut_stream(upstream, spool):
    async def calls():
        received = 0
        async with hooked(upstream.url, spool) as client:
            with pytest.raises(openai.APIConnectionError):
                async for _ in await client.responses.create(
                    model="gpt-4o-mini", input=PROMPT, stream=True,
                    extra_headers={"X-Simulator-Fault": "cut_stream"},
                ):
                    received += 1
        return received

    assert asyncio.run(calls()) > 0
    [event] = journaled_events(spool.directory)
    assert (event.http_status, event.outcome) == (502, "upstream_error")
    assert event.response_id.startswith("resp_") and event.endpoint == "/v1/responses"
