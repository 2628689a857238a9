"""Anthropic's Messages API through the gateway: the real anthropic SDK, changed only in
``base_url``, against one `spendtrail gateway --routes FILE` process routing to three
upstream doubles (Anthropic, OpenAI, CometAPI) that also serves the real openai SDK;
metered exactly, streamed and not."""

from __future__ import annotations

import asyncio

import anthropic
import openai
import pytest
from anthropic_upstream import USAGE, AnthropicDouble
from gateway_process import GatewayProcess
from gateway_upstream import UpstreamDouble
from test_gateway_routes import seed

from spendtrail.events import Usage

ANTHROPIC_KEY = "sk-ant-api03-ROUTEcanary0aa1bb2cc3dd4ee5ff6gg7hh8"
COMET_KEY = "sk-cometROUTEkey0a1b2c3d4e5f6a7b8c9d0e1f2"
OPENAI_KEY = "sk-openaiROUTEkey9f8e7d6c5b4a3f2e1d0c9b8"
ENV = {"ANTHROPIC_TEST_KEY": ANTHROPIC_KEY, "COMETAPI_TEST_KEY": COMET_KEY,
       "OPENAI_TEST_KEY": OPENAI_KEY}
# What the double's usage comes to: all input = uncached + cache reads + cache writes.
METERS = Usage(
    input_tokens=50 + 1000 + 1500,
    cached_input_tokens=1000,
    cache_write_tokens=1500,
    cache_write_1h_tokens=400,
    output_tokens=40,
    requests=1,
)


@pytest.fixture
def gateway(ledger_url, tmp_path):
    claude = AnthropicDouble(ANTHROPIC_KEY)
    comet = UpstreamDouble(COMET_KEY)
    chatgpt = UpstreamDouble(OPENAI_KEY)
    routes = tmp_path / "routes.yaml"
    routes.write_text(f"""\
upstreams:
  anthropic:
    url: {claude.start()}
    key_env: ANTHROPIC_TEST_KEY
    api: anthropic
  comet:
    url: {comet.start()}
    key_env: COMETAPI_TEST_KEY
    provider: cometapi
  openai:
    url: {chatgpt.start()}
    key_env: OPENAI_TEST_KEY
routes:
  - model: "claude-*"
    upstream: anthropic
  - model: "gpt-4.1*"
    upstream: openai
default: comet
""")
    key = seed(ledger_url, tmp_path)
    try:
        with GatewayProcess(
            ledger_url, None, None, tmp_path / "home", "--routes", str(routes), env=ENV
        ) as process:
            yield process, key, claude, comet, chatgpt
    finally:
        claude.stop()
        comet.stop()
        chatgpt.stop()


def test_the_anthropic_sdk_is_metered_exactly_streamed_and_not(gateway):
    process, key, claude, comet, chatgpt = gateway
    client = anthropic.Anthropic(base_url=process.base_url, api_key=key, max_retries=0)
    ask = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "hi"}],
    }

    message = client.messages.create(**ask)
    assert message.content[0].text == "Hello from Claude"
    assert message.usage.cache_read_input_tokens == 1000

    with client.messages.stream(**ask) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hello from Claude"
    assert final.usage.output_tokens == 40

    counted = client.messages.count_tokens(model="claude-sonnet-4-5", messages=ask["messages"])
    assert counted.input_tokens == 42

    # The same gateway serves the openai SDK: gpt-4.1 from OpenAI by its pattern, anything
    # else from its default upstream.
    chat = openai.OpenAI(base_url=process.base_url + "/v1", api_key=key, max_retries=0)
    assert chat.chat.completions.create(model="gpt-4o-mini", messages=[]).choices
    assert chat.chat.completions.create(model="gpt-4.1-mini", messages=[]).model == (
        "gpt-4.1-mini")

    events = process.wait_for_events(5)
    assert len(events) == 5
    plain, streamed, tokens, other, routed = events
    for event in (plain, streamed):
        assert (event.provider, event.endpoint, event.http_status, event.outcome) == (
            "anthropic",
            "/v1/messages",
            200,
            "success",
        )
        assert event.usage == METERS
        assert event.model_requested == event.model_served == "claude-sonnet-4-5"
        assert event.response_id.startswith("msg_double")
        assert event.provider_request_id.startswith("req_double")
        assert event.service_tier is None  # "standard"
        assert event.raw_usage["server_tool_use"] == {"web_search_requests": 1}
    assert plain.raw_usage == USAGE
    assert (tokens.provider, tokens.endpoint, tokens.usage) == (
        "anthropic",
        "/v1/messages/count_tokens",
        Usage(),
    )
    assert (other.provider, other.endpoint) == ("cometapi", "/v1/chat/completions")
    assert (routed.provider, routed.model_requested) == ("openai", "gpt-4.1-mini")
    assert [r.json()["model"] for r in chatgpt.received] == ["gpt-4.1-mini"]
    assert [r.json()["model"] for r in comet.received] == ["gpt-4o-mini"]
    assert {r.headers["Authorization"] for r in chatgpt.received} == {f"Bearer {OPENAI_KEY}"}

    # The provider got its own key as x-api-key, never the gateway key, and the SDK's
    # anthropic-version header.
    for call in claude.received:
        assert call.headers["x-api-key"] == ANTHROPIC_KEY
        assert "Authorization" not in call.headers
        assert call.headers["anthropic-version"]
    assert [call.path for call in claude.received] == [
        "/v1/messages",
        "/v1/messages",
        "/v1/messages/count_tokens",
    ]
    assert all(key not in str(call.headers) for call in (*comet.received, *chatgpt.received))


def test_async_streams_and_errors_keep_the_provider_key_out(gateway):
    process, key, claude, _, _ = gateway

    async def run() -> tuple[str, str]:
        client = anthropic.AsyncAnthropic(base_url=process.base_url, api_key=key, max_retries=0)
        stream = await client.messages.create(
            model="claude-haiku-4-5",
            max_tokens=10,
            stream=True,
            messages=[{"role": "user", "content": "hi"}],
        )
        kinds = [event.type async for event in stream]
        with pytest.raises(anthropic.BadRequestError) as refused:
            await client.messages.create(
                model="claude-echo", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
            )
        await client.close()
        return ",".join(kinds), str(refused.value.body)

    kinds, error = asyncio.run(run())
    assert kinds.startswith("message_start,") and kinds.endswith(",message_stop")
    assert ANTHROPIC_KEY not in error and "<redacted>" in error
    streamed, refused = process.wait_for_events(2)
    assert streamed.usage == METERS
    assert (refused.http_status, refused.outcome, refused.usage) == (400, "client_error", Usage())
    assert ANTHROPIC_KEY not in process.output()


def test_the_gateway_key_is_taken_from_x_api_key(gateway):
    process, key, claude, _, _ = gateway

    def client(sent: str) -> anthropic.Anthropic:
        # the key in x-api-key alone, as older anthropic SDKs and curl examples send it
        return anthropic.Anthropic(
            base_url=process.base_url,
            api_key=None,
            max_retries=0,
            default_headers={"x-api-key": sent},
        )

    ask = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "hi"}],
    }
    with pytest.raises(anthropic.AuthenticationError):
        client("sk-st-not-a-key").messages.create(**ask)
    assert claude.received == []
    assert client(key).messages.create(**ask).usage.output_tokens == 40
    [call] = claude.received
    assert call.headers["x-api-key"] == ANTHROPIC_KEY


def test_the_anthropic_profile_is_a_one_route_gateway(ledger_url, tmp_path):
    claude = AnthropicDouble(ANTHROPIC_KEY)
    url = claude.start()
    key = seed(ledger_url, tmp_path)
    try:
        with GatewayProcess(
            ledger_url,
            None,
            None,
            tmp_path / "home",
            "--profile",
            "anthropic",
            "--upstream",
            url,
            env={"ANTHROPIC_API_KEY": ANTHROPIC_KEY, "SPENDTRAIL_UPSTREAM_KEY": ""},
        ) as process:
            client = anthropic.Anthropic(base_url=process.base_url, api_key=key, max_retries=0)
            client.messages.create(
                model="claude-opus-4-1", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
            )
            [event] = process.wait_for_events(1)
    finally:
        claude.stop()
    assert (event.provider, event.usage) == ("anthropic", METERS)
    assert claude.received[0].headers["x-api-key"] == ANTHROPIC_KEY
