"""The in-process hook on the anthropic SDK: sync and async clients against the Messages
double, streamed and not, metered as the gateway meters them."""

from __future__ import annotations

import asyncio

import anthropic
import pytest
from anthropic_upstream import AnthropicDouble
from factories import journaled_events
from test_gateway_anthropic import METERS

import spendtrail
from spendtrail.events import Usage
from spendtrail.hook import provider_for

KEY = "sk-ant-api03-HOOKcanary0aa1bb2cc3dd4ee5ff6gg7hh8ii9"
ASK = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 100,
    "messages": [{"role": "user", "content": "hi"}],
}


@pytest.fixture
def claude():
    double = AnthropicDouble(KEY)
    url = double.start()
    yield double, url.removesuffix("/v1")  # the SDK's base URL is the host
    double.stop()


def test_anthropic_calls_are_events_with_exact_meters(claude, tmp_path):
    double, base = claude
    client = spendtrail.instrument(
        anthropic.Anthropic(base_url=base, api_key=KEY, max_retries=0),
        application="support-assistant",
        environment="production",
        provider="anthropic",
        spool=tmp_path,
    )
    assert client.messages.create(**ASK).usage.output_tokens == 40
    with client.messages.stream(**ASK) as stream:
        assert "".join(stream.text_stream) == "Hello from Claude"
    assert (
        client.messages.count_tokens(model=ASK["model"], messages=ASK["messages"]).input_tokens
        == 42
    )
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(**{**ASK, "model": "claude-echo"})
    plain, streamed, counted, refused = journaled_events(tmp_path)
    for event in (plain, streamed):
        assert (event.provider, event.endpoint, event.http_status, event.source) == (
            "anthropic",
            "/v1/messages",
            200,
            "hook",
        )
        assert event.usage == METERS
        assert event.response_id.startswith("msg_double")
        assert event.provider_request_id.startswith("req_double")
        assert event.context.application == "support-assistant"
    assert (counted.endpoint, counted.usage) == ("/v1/messages/count_tokens", Usage())
    assert (refused.http_status, refused.outcome) == (400, "client_error")
    assert KEY.encode() not in b"".join(p.read_bytes() for p in tmp_path.glob("*.jsonl*"))
    # Nothing of ours reached the provider.
    assert not any(
        name.lower().startswith("x-spendtrail") for call in double.received for name in call.headers
    )


def test_async_anthropic_streams_are_recorded(claude, tmp_path):
    _, base = claude

    async def run() -> list[str]:
        client = spendtrail.instrument(
            anthropic.AsyncAnthropic(base_url=base, api_key=KEY, max_retries=0),
            application="search-summaries",
            spool=tmp_path,
        )
        stream = await client.messages.create(**ASK, stream=True)
        kinds = [event.type async for event in stream]
        await client.close()
        return kinds

    kinds = asyncio.run(run())
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    [event] = journaled_events(tmp_path)
    assert (event.endpoint, event.usage, event.outcome) == ("/v1/messages", METERS, "success")


def test_anthropic_hosts_name_the_provider():
    assert provider_for("api.anthropic.com") == "anthropic"
