"""The gateway end to end: the real openai SDK -> gateway on loopback -> UpstreamDouble.

Every test reads the events the gateway journaled from its spool files.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

import openai
import pytest
import sqlalchemy as sa
from factories import SHEET as BASE_SHEET
from factories import journaled_events, seed_books
from gateway_upstream import CHAT_USAGE, RESPONSES_USAGE, UpstreamDouble

from spendtrail.budgets import Budget, BudgetGuard
from spendtrail.budgets.store import delete_budget, save_budget
from spendtrail.events import Usage, UsageEvent
from spendtrail.gateway import (
    GatewayConfig,
    GatewayServer,
    Policy,
    create_key,
    revoke_key,
)
from spendtrail.gateway.budget import GuardedBudgets
from spendtrail.ledger.db import make_engine, migrate
from spendtrail.ledger.ingest import Ingester
from spendtrail.ledger.schema import cost_entries, events

UPSTREAM_KEY = "sk-upstream-Zq9Zq9Zq9Zq9Zq9Zq9Zq9Zq9Zq9"
SHEET = BASE_SHEET + """  - model: text-embedding-3-small
    prices: {input_tokens: "0.02"}
  - model: dall-e-3
    prices: {images: "0.04"}
"""


def seed(engine: sa.Engine, tmp: Path) -> dict[str, str]:
    """Registry, prices and gateway keys; returns key values by name."""
    keys = {}
    with engine.begin() as conn:
        seed_books(conn, tmp, SHEET)
        for name, app, env in (("prod", "support-assistant", "production"),
                               ("staging", "support-assistant", "staging"),
                               ("any_env", "search-summaries", None)):
            keys[name] = create_key(conn, application=app, environment=env, actor="test")[1]
    return keys


@pytest.fixture(scope="module")
def upstream():
    double = UpstreamDouble(UPSTREAM_KEY)
    double.url = double.start()
    yield double
    double.stop()


@pytest.fixture(scope="module")
def shared_ledger(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gateway-ledger")
    url = f"sqlite:///{tmp / 'ledger.db'}"
    engine = make_engine(url)
    migrate(engine)
    keys = seed(engine, tmp)
    yield url, engine, keys
    engine.dispose()


class Gateway:
    def __init__(self, server: GatewayServer, base: str, spool: Path) -> None:
        self.server = server
        self.base = base
        self.spool = spool

    def client(self, key: str, **options) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base + "/v1", api_key=key,
                             max_retries=options.pop("max_retries", 0), **options)

    def async_client(self, key: str, max_retries: int = 0) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.base + "/v1", api_key=key,
                                  max_retries=max_retries)

    def events(self, count: int | None = None, timeout: float = 5.0) -> list[UsageEvent]:
        """The journaled events; waits until there are `count` of them."""
        deadline = time.monotonic() + timeout
        while True:
            found = journaled_events(self.spool)
            if count is None or len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.02)

    def spool_bytes(self) -> bytes:
        return b"".join(path.read_bytes() for path in self.spool.rglob("*.jsonl*"))


@pytest.fixture
def start_gateway(upstream, shared_ledger, tmp_path):
    upstream.reset()
    servers = []

    def start(ledger_url: str | None = None, **overrides) -> Gateway:
        spool = tmp_path / f"spool{len(servers)}"
        settings = {
            "upstream_url": upstream.url, "upstream_key": UPSTREAM_KEY, "provider": "cometapi",
            "ledger_url": ledger_url or shared_ledger[0], "spool_dir": spool,
            "refresh_seconds": 0.05, "read_timeout": 1.0, "max_response_bytes": 64 * 1024,
        }
        server = GatewayServer(GatewayConfig(**{**settings, **overrides}))
        servers.append(server)
        return Gateway(server, server.start(), spool)

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def gw(start_gateway) -> Gateway:
    return start_gateway()


@pytest.fixture
def keys(shared_ledger) -> dict[str, str]:
    return shared_ledger[2]


def http(url: str, payload: dict | None = None) -> tuple[int, bytes]:
    """A plain HTTP call without the SDK: (status, body)."""
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello"}]}
CHAT_METERS = Usage(input_tokens=12, cached_input_tokens=4, output_tokens=5, reasoning_tokens=2,
                    requests=1)


# -- the endpoints, through the openai SDK -----------------------------------------------------


def test_chat_completion_is_forwarded_and_recorded(gw, keys, upstream):
    raw = gw.client(keys["prod"]).chat.completions.with_raw_response.create(
        **CHAT, extra_headers={"X-Spendtrail-Job-Id": "nightly-42",
                               "X-Spendtrail-Tags": "team=support, ticket=T-1"})
    completion = raw.parse()
    assert completion.choices[0].message.content == "Hello world!"
    assert completion.usage.prompt_tokens == 12

    [event] = gw.events()
    assert raw.headers["X-Spendtrail-Event-Id"] == event.event_id
    assert raw.headers["X-Spendtrail-Request-Id"] == event.request_id == event.event_id
    assert raw.headers["X-Spendtrail-Allocation"] == "allocated"
    assert raw.headers["X-Spendtrail-Budget"] == "none"
    # 8 uncached x 0.15 + 4 cached x 0.075 + 5 output x 0.60, per million tokens
    assert raw.headers["X-Spendtrail-Cost"] == "0.0000045 USD"
    assert event.usage == CHAT_METERS
    assert event.raw_usage == CHAT_USAGE
    assert (event.provider, event.endpoint, event.source) == (
        "cometapi", "/v1/chat/completions", "gateway")
    assert (event.model_requested, event.model_served) == ("gpt-4o-mini", "gpt-4o-mini")
    assert (event.http_status, event.outcome, event.attempt) == (200, "success", 1)
    assert event.response_id == "chatcmpl-abc123"
    assert event.provider_request_id == raw.headers["X-Oneapi-Request-Id"]
    assert event.gateway_key_id.startswith("gk_")
    assert event.ended_at >= event.started_at
    context = event.context
    assert (context.application, context.environment, context.job_id) == (
        "support-assistant", "production", "nightly-42")
    assert context.tags == {"team": "support", "ticket": "T-1"}
    assert context.workload_class is None  # the registry's default applies at ingest

    sent = upstream.last("/v1/chat/completions")
    assert sent.headers["Authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert not [name for name in sent.headers if name.lower().startswith("x-spendtrail")]
    assert sent.json() == CHAT


def test_a_cookie_the_provider_sets_reaches_no_caller(start_gateway, keys, upstream):
    """One upstream session serves every caller: a cookie set on one call must not ride on
    the next (aiohttp's default jar keeps cookies of named hosts, so the upstream is
    reached as localhost here, not 127.0.0.1)."""
    gw = start_gateway(upstream_url=upstream.url.replace("127.0.0.1", "localhost"))
    upstream.script("gpt-4o-mini", ["set_cookie"])
    first = gw.client(keys["prod"]).chat.completions.with_raw_response.create(**CHAT)
    assert upstream.last("/v1/chat/completions").fault == "set_cookie"
    assert "set-cookie" not in first.headers
    gw.client(keys["prod"]).chat.completions.create(**CHAT)
    second = upstream.last("/v1/chat/completions")
    assert second.fault is None
    assert "Cookie" not in second.headers


def test_stream_without_include_usage_strips_the_usage_chunk(gw, keys, upstream):
    stream = gw.client(keys["prod"]).chat.completions.create(**CHAT, stream=True)
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello world!"
    assert all(chunk.choices for chunk in chunks)  # no usage-only chunk reached the client
    assert all(chunk.usage is None for chunk in chunks)
    assert upstream.last("/v1/chat/completions").json()["stream_options"] == {
        "include_usage": True}
    [event] = gw.events()
    assert event.usage == CHAT_METERS
    assert (event.outcome, event.http_status, event.response_id) == (
        "success", 200, "chatcmpl-stream1")


def test_stream_with_include_usage_keeps_the_usage_chunk(gw, keys):
    chunks = list(gw.client(keys["prod"]).chat.completions.create(
        **CHAT, stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].choices == []
    assert chunks[-1].usage.prompt_tokens == 12
    assert [e.usage for e in gw.events()] == [CHAT_METERS]


def test_stream_passes_chunks_through_as_they_arrive(gw, keys, upstream):
    upstream.release.clear()
    upstream.script("gpt-4o-mini", ["hold"])  # the rest only comes after the first arrived
    stream = gw.client(keys["prod"], timeout=5).chat.completions.create(**CHAT, stream=True)
    first = next(iter(stream))
    assert first.choices[0].delta.role == "assistant"
    assert gw.events(timeout=0) == []  # still under way
    upstream.release.set()
    assert "".join(c.choices[0].delta.content or "" for c in stream) == "Hello world!"
    assert gw.events(1)[0].usage == CHAT_METERS


def test_stream_headers_reach_the_client_before_the_first_event(gw, keys, upstream):
    """A provider slow to its first token: the client has the response (its headers) at
    once, as it would from the provider; the gateway does not hold them for the first event."""
    upstream.release.clear()
    upstream.script("gpt-4o-mini", ["hold_first"])
    client = gw.client(keys["prod"], timeout=5)
    try:
        raw = client.chat.completions.with_raw_response.create(**CHAT, stream=True)
        assert raw.headers["X-Spendtrail-Event-Id"]  # before any event was sent
        assert gw.events(timeout=0) == []
    finally:
        upstream.release.set()
    text = "".join(c.choices[0].delta.content or "" for c in raw.parse())
    assert text == "Hello world!"
    assert gw.events(1)[0].usage == CHAT_METERS


def test_async_client_streaming_and_not(gw, keys):
    async def run() -> tuple[str, str]:
        client = gw.async_client(keys["prod"])
        completion = await client.chat.completions.create(**CHAT)
        stream = await client.chat.completions.create(**CHAT, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream])
        await client.close()
        return completion.choices[0].message.content, text

    assert asyncio.run(run()) == ("Hello world!", "Hello world!")
    assert [e.usage for e in gw.events(2)] == [CHAT_METERS, CHAT_METERS]


def test_completions_embeddings_images_and_models(gw, keys):
    client = gw.client(keys["prod"])
    completion = client.completions.create(model="gpt-4o-mini", prompt="Say hello")
    assert completion.choices[0].text == "Hello world!"
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model="gpt-4o-mini", prompt="Say hello", stream=True) if c.choices)
    assert streamed == "Hello world!"
    embedding = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert embedding.data[1].embedding == [0.25, -0.5, 1.0]
    raw = client.images.with_raw_response.generate(model="dall-e-3", prompt="a cat", n=2)
    assert len(raw.parse().data) == 2
    assert raw.headers["X-Spendtrail-Cost"] == "0.08 USD"
    assert [m.id for m in client.models.list()][0] == "gpt-4o-mini"

    by_endpoint = {}
    recorded = gw.events(5)
    assert len(recorded) == 5
    for event in recorded:
        by_endpoint.setdefault(event.endpoint, []).append(event)
    assert [e.usage for e in by_endpoint["/v1/completions"]] == [
        Usage(input_tokens=6, output_tokens=5, requests=1)] * 2
    [embed] = by_endpoint["/v1/embeddings"]
    assert embed.usage == Usage(input_tokens=16, requests=1)
    [image] = by_endpoint["/v1/images/generations"]
    assert image.usage == Usage(images=2, requests=1)
    [models] = by_endpoint["/v1/models"]
    assert models.usage == Usage() and models.outcome == "success"


def test_responses_api_plain_and_streamed(gw, keys):
    client = gw.client(keys["prod"])
    response = client.responses.create(model="gpt-4o-mini", input="Say hello")
    assert response.output_text == "Hello world!"
    kinds = [event.type for event in client.responses.create(
        model="gpt-4o-mini", input="Say hello", stream=True)]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    meters = Usage(input_tokens=20, output_tokens=7, reasoning_tokens=3, requests=1)
    recorded = gw.events(2)
    assert [(e.usage, e.raw_usage, e.response_id) for e in recorded] == [
        (meters, RESPONSES_USAGE, "resp_abc123")] * 2


def test_other_paths_pass_through_unmetered(gw, keys):
    raw = gw.client(keys["prod"]).moderations.with_raw_response.create(input="hi")
    assert raw.parse().results[0].flagged is False
    assert raw.headers["X-Spendtrail-Cost"] == "unmetered"
    [event] = gw.events()
    assert (event.endpoint, event.usage, event.outcome) == ("/v1/moderations", Usage(), "success")
    assert event.provider_request_id == raw.headers["X-Oneapi-Request-Id"]


def test_unmetered_bodies_are_relayed_not_buffered(gw, keys, upstream):
    content = gw.client(keys["prod"]).files.content("file-1").read()
    assert len(content) == upstream.file_bytes > 64 * 1024  # above the buffered-body limit
    assert content[:3] == b"\x00\x01\x02"
    [event] = gw.events()
    assert (event.endpoint, event.http_status, event.usage) == (
        "/v1/files/file-1/content", 200, Usage())


def test_dot_segments_cannot_leave_v1(gw, keys, upstream):
    calls = len(upstream.received)
    request = urllib.request.Request(gw.base + "/v1/%2e%2e/api/user/self",
                                     headers={"Authorization": f"Bearer {keys['prod']}"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 400
    assert json.loads(refused.value.read())["error"]["code"] == "invalid_path"
    assert len(upstream.received) == calls


# -- identity ---------------------------------------------------------------------------------


def test_missing_and_wrong_keys_get_401(gw, keys):
    status, body = http(gw.base + "/v1/chat/completions", CHAT)
    assert status == 401
    assert json.loads(body)["error"] == {
        "message": "missing gateway key: send 'Authorization: Bearer sk-st-...' (or "
        "'x-api-key: sk-st-...') with a key from `spendtrail keys create`",
        "type": "authentication_error", "param": None, "code": "missing_api_key"}
    with pytest.raises(openai.AuthenticationError) as wrong:
        gw.client("sk-st-not-a-key").chat.completions.create(**CHAT)
    assert wrong.value.code == "invalid_api_key"
    assert "sk-st-not-a-key" not in str(wrong.value.body)
    assert gw.events(timeout=0) == []


def test_revocation_applies_without_restart(gw, shared_ledger):
    engine = shared_ledger[1]
    with engine.begin() as conn:
        key, value = create_key(conn, application="support-assistant", environment="staging",
                                actor="test")
    client = gw.client(value)
    deadline = time.monotonic() + 5
    while True:  # a key created after start-up is picked up by the refresh
        try:
            client.models.list()
            break
        except openai.AuthenticationError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    with engine.begin() as conn:
        revoke_key(conn, key.id, actor="test", reason="leaked")
    deadline = time.monotonic() + 5
    with pytest.raises(openai.AuthenticationError) as refused:
        while time.monotonic() < deadline:
            client.models.list()
            time.sleep(0.05)
    assert refused.value.code == "revoked_api_key"


def test_rotation_grace_keeps_the_old_key_working(gw, shared_ledger):
    from spendtrail.gateway import rotate_key

    engine = shared_ledger[1]
    with engine.begin() as conn:
        old, old_value = create_key(conn, application="eval-harness", environment="staging",
                                    actor="test")
        new, new_value = rotate_key(conn, old.id, actor="test", grace=timedelta(hours=1))
    assert new.rotated_from == old.id
    time.sleep(0.3)
    for value in (old_value, new_value):
        assert gw.client(value).models.list().data


def test_reject_policy_names_the_header_and_allowed_values(gw, keys, upstream):
    calls = len(upstream.received)
    with pytest.raises(openai.BadRequestError) as unknown:
        gw.client(keys["prod"]).chat.completions.create(
            **CHAT, extra_headers={"X-Spendtrail-Workload": "fun"})
    message = unknown.value.body["message"]
    assert "X-Spendtrail-Workload: 'fun' is not in the registry" in message
    assert "allowed: eval, user_facing" in message
    assert unknown.value.body["param"] == "X-Spendtrail-Workload"
    assert unknown.value.code == "spendtrail_unknown_workload_class"

    with pytest.raises(openai.PermissionDeniedError) as moved:
        gw.client(keys["prod"]).chat.completions.create(
            **CHAT, extra_headers={"X-Spendtrail-Cost-Center": "CC-200"})
    assert "X-Spendtrail-Cost-Center: 'CC-200' would move the call to another owner" in (
        moved.value.body["message"])
    assert "allowed: CC-110" in moved.value.body["message"]
    assert len(upstream.received) == calls  # refused calls never reach the provider
    assert gw.events(timeout=0) == []


def test_quarantine_policy_serves_and_flags(gw, keys):
    client = gw.client(keys["staging"])
    raw = client.chat.completions.with_raw_response.create(
        **CHAT, extra_headers={"X-Spendtrail-Workload": "fun",
                               "X-Spendtrail-Cost-Center": "CC-200"})
    assert raw.parse().choices[0].message.content == "Hello world!"
    assert raw.headers["X-Spendtrail-Allocation"] == "quarantined"
    [event] = gw.events()
    assert (event.context.workload_class, event.context.cost_center) == ("fun", "CC-200")
    assert event.context.application == "support-assistant"


def test_a_policy_naming_an_unknown_environment_is_warned_about_at_start(
        start_gateway, keys, caplog):
    with caplog.at_level(logging.WARNING, logger="spendtrail.gateway"):
        start_gateway(policy=Policy({"prod": "reject", "staging": "quarantine"}))
    [warning] = [r.getMessage() for r in caplog.records if "header policy" in r.getMessage()]
    assert warning.startswith("the header policy names prod, not an environment of the latest "
                              "registry (development, production, staging)")


def test_what_the_key_fixes_is_refused_under_any_policy(start_gateway, keys):
    gw = start_gateway(policy=Policy({}, "quarantine"))
    client = gw.client(keys["staging"])
    with pytest.raises(openai.PermissionDeniedError) as env:
        client.models.list(extra_headers={"X-Spendtrail-Environment": "production"})
    assert "this gateway key is for 'staging'" in env.value.body["message"]
    with pytest.raises(openai.PermissionDeniedError) as app:
        client.models.list(extra_headers={"X-Spendtrail-Application": "contract-review"})
    assert "belongs to 'support-assistant'" in app.value.body["message"]


def test_an_unknown_environment_cannot_choose_a_milder_policy(gw, keys):
    client = gw.client(keys["any_env"])  # search-summaries: may run in production
    with pytest.raises(openai.BadRequestError) as refused:
        client.models.list(extra_headers={"X-Spendtrail-Environment": "prod",
                                          "X-Spendtrail-Workload": "batch"})
    assert "X-Spendtrail-Environment: 'prod' is not in the registry" in (
        refused.value.body["message"])
    raw = client.models.with_raw_response.list(
        extra_headers={"X-Spendtrail-Environment": "development", "X-Spendtrail-Workload": "batch"})
    assert raw.headers["X-Spendtrail-Allocation"] == "allocated"


def test_budgets_refuse_at_the_hard_limit_and_report_their_state(
        start_gateway, keys, upstream, shared_ledger):
    """A real token budget on the budget owner of the key's application: 17 tokens a call,
    each reserving its estimate (body bytes / 4 + max_tokens) before it is sent."""
    engine = shared_ledger[1]
    with engine.begin() as conn:
        save_budget(conn, Budget(id="ben-tokens", scope="budget_owner", scope_value="ben.okafor",
                                 period="month", limit_units=60, thresholds=(50,)),
                    actor="test", reason="gateway test")
    try:
        gw = start_gateway(budget=GuardedBudgets(BudgetGuard.load(engine)))
        client = openai.OpenAI(base_url=gw.base + "/v1", api_key=keys["prod"])  # 2 retries
        assert client.max_retries == 2
        states = [client.chat.completions.with_raw_response.create(**CHAT, max_tokens=5)
                  .headers["X-Spendtrail-Budget"] for _ in range(2)]
        # Spend before each call: 0, then 17 (28%).
        assert states == ["ben-tokens=0%;ok", "ben-tokens=28%;ok"]
        estimate = -(-len(upstream.received[-1].body) // 4) + 5
        assert 34 + estimate > 60, "the test needs a third call that cannot fit"
        calls = len(upstream.received)
        with pytest.raises(openai.RateLimitError) as refused:  # 34 + estimate > 60: refused
            client.chat.completions.create(**CHAT, max_tokens=5)
        assert len(upstream.received) == calls  # not sent
        # The SDK asked once: x-should-retry: false overrides its retry of a 429.
        assert 'spendtrail_gateway_rejected_total{code="budget_exceeded"} 1' in (
            http(gw.base + "/metrics")[1].decode())
        error = refused.value.body
        assert (refused.value.code, error["budget"], error["spent"]) == (
            "budget_exceeded", "ben-tokens", "34 tokens")
        assert f"estimated cost, {estimate} tokens, would cross the hard limit" in (
            error["message"])
        headers = refused.value.response.headers
        assert headers["x-should-retry"] == "false"
        assert 0 < int(headers["Retry-After"]) <= 31 * 86400
        other = gw.client(keys["any_env"]).chat.completions.with_raw_response.create(
            **CHAT, extra_headers={"X-Spendtrail-Environment": "production",
                                   "X-Spendtrail-Workload": "batch"})
        assert other.headers["X-Spendtrail-Budget"] == "none"  # another owner: no budget
    finally:
        with engine.begin() as conn:
            delete_budget(conn, "ben-tokens", actor="test", reason="gateway test done")


def test_budget_refusals_are_not_retried_by_the_sdk(start_gateway, keys, upstream,
                                                     shared_ledger):
    """The openai SDK retries a 429 twice by default; `x-should-retry: false` stops it."""
    engine = shared_ledger[1]
    with engine.begin() as conn:
        save_budget(conn, Budget(id="sa-tiny", scope="application",
                                 scope_value="support-assistant", period="day", limit_units=17),
                    actor="test", reason="gateway test")
    try:
        gw = start_gateway(budget=GuardedBudgets(BudgetGuard.load(engine)))
        client = openai.OpenAI(base_url=gw.base + "/v1", api_key=keys["prod"])
        with pytest.raises(openai.RateLimitError) as refused:
            for _ in range(3):  # until the budget refuses
                client.chat.completions.create(**CHAT)
        assert refused.value.response.headers["x-should-retry"] == "false"
        metrics = http(gw.base + "/metrics")[1].decode()
        assert 'spendtrail_gateway_rejected_total{code="budget_exceeded"} 1' in metrics
    finally:
        with engine.begin() as conn:
            delete_budget(conn, "sa-tiny", actor="test", reason="gateway test done")


def test_budgets_follow_the_key_whatever_else_is_quarantined(start_gateway, keys, upstream,
                                                             shared_ledger):
    """A staging key of support-assistant with an unknown workload is quarantined, but the
    key proves the application: the call counts against its budget and is refused by it."""
    engine = shared_ledger[1]
    with engine.begin() as conn:
        save_budget(conn, Budget(id="sa-staging", scope="cost_center", scope_value="CC-110",
                                 period="month", limit_units=60),
                    actor="test", reason="gateway test")
    try:
        gw = start_gateway(budget=GuardedBudgets(BudgetGuard.load(engine)))
        client = gw.client(keys["staging"])
        unknown = {"X-Spendtrail-Workload": "moon", "X-Spendtrail-Cost-Center": "CC-200"}
        raw = client.chat.completions.with_raw_response.create(
            **CHAT, max_tokens=5, extra_headers=unknown)
        assert raw.headers["X-Spendtrail-Allocation"] == "quarantined"
        assert raw.headers["X-Spendtrail-Budget"] == "sa-staging=0%;ok"
        raw = client.chat.completions.with_raw_response.create(**CHAT, max_tokens=5)
        assert raw.headers["X-Spendtrail-Allocation"] == "allocated"
        assert raw.headers["X-Spendtrail-Budget"] == "sa-staging=28%;ok"  # 17 of 60 settled
        calls = len(upstream.received)
        with pytest.raises(openai.RateLimitError) as refused:  # 34 + the estimate > 60
            client.chat.completions.create(**CHAT, max_tokens=5, extra_headers=unknown)
        assert refused.value.body["budget"] == "sa-staging"
        assert len(upstream.received) == calls
    finally:
        with engine.begin() as conn:
            delete_budget(conn, "sa-staging", actor="test", reason="gateway test done")


# -- retries and request linking --------------------------------------------------------------


def test_sdk_retries_are_attempts_of_one_request(gw, keys, upstream):
    upstream.script("gpt-4o-mini", ["500", "500"])
    client = gw.client(keys["prod"], max_retries=2)
    assert client.chat.completions.create(**CHAT).choices[0].message.content == "Hello world!"
    attempts = gw.events(3)
    assert [e.attempt for e in attempts] == [1, 2, 3]
    assert len({e.request_id for e in attempts}) == 1
    assert attempts[0].request_id == attempts[0].event_id
    assert [e.outcome for e in attempts] == ["upstream_error", "upstream_error", "success"]
    assert [e.http_status for e in attempts] == [500, 500, 200]
    assert [e.usage for e in attempts] == [Usage(), Usage(), CHAT_METERS]

    client.chat.completions.create(**CHAT)  # same body, a new request: a new id
    assert gw.events(4)[-1].request_id not in {e.request_id for e in attempts}


def test_concurrent_identical_calls_retried_after_a_500_stay_two_requests(gw, keys, upstream):
    upstream.script("gpt-4o-mini", ["500", "500"])  # both first attempts fail

    async def both() -> list:
        client = gw.async_client(keys["prod"], max_retries=2)
        try:
            return await asyncio.gather(*(client.chat.completions.create(**CHAT)
                                          for _ in range(2)))
        finally:
            await client.close()

    assert all(r.choices[0].message.content == "Hello world!" for r in asyncio.run(both()))
    requests: dict[str, list[UsageEvent]] = {}
    for event in gw.events(4):
        requests.setdefault(event.request_id, []).append(event)
    assert len(requests) == 2
    for attempts in requests.values():
        attempts.sort(key=lambda e: e.attempt)
        assert [(e.attempt, e.outcome) for e in attempts] == [
            (1, "upstream_error"), (2, "success")]


def test_idempotency_key_links_attempts(gw, keys):
    client = gw.client(keys["prod"])
    for _ in range(2):
        client.chat.completions.create(**CHAT, extra_headers={"Idempotency-Key": "order-7"})
    client.chat.completions.create(**CHAT, extra_headers={"Idempotency-Key": "order-8"})
    first, second, other = gw.events(3)
    assert first.request_id == second.request_id != other.request_id
    assert first.request_id.startswith("ik-")
    assert (first.attempt, second.attempt, other.attempt) == (1, 1, 1)  # SDK count: 0 each


# -- faults -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "error", "status", "outcome", "code"),
    [
        ("500", openai.InternalServerError, 500, "upstream_error", "server_error"),
        ("500_text", openai.InternalServerError, 500, "upstream_error", "upstream_http_error"),
        ("timeout", openai.APIStatusError, 504, "timeout", "upstream_timeout"),
        ("reset", openai.APIStatusError, 502, "upstream_error", "upstream_connection_failed"),
        ("malformed", openai.APIStatusError, 502, "upstream_error",
         "upstream_malformed_response"),
        ("not_http", openai.APIStatusError, 502, "upstream_error",
         "upstream_malformed_response"),
        ("oversized", openai.APIStatusError, 502, "upstream_error",
         "upstream_response_too_large"),
    ],
)
def test_upstream_faults(gw, keys, upstream, fault, error, status, outcome, code):
    upstream.script("gpt-4o-mini", [fault])
    upstream.slow_seconds = 3.0  # the gateway's read timeout is 1 s
    with pytest.raises(error) as raised:
        gw.client(keys["prod"]).chat.completions.create(**CHAT)
    assert raised.value.status_code == status
    assert raised.value.code == code
    assert raised.value.response.headers["X-Spendtrail-Event-Id"]
    [event] = gw.events()
    assert (event.http_status, event.outcome, event.usage) == (status, outcome, Usage())
    assert event.event_id == raised.value.response.headers["X-Spendtrail-Event-Id"]


def test_provider_4xx_passes_through_and_large_requests_are_refused(start_gateway, keys):
    gw = start_gateway(max_request_bytes=4096)
    client = gw.client(keys["prod"])
    with pytest.raises(openai.NotFoundError) as missing:
        client.get("/no-such-thing", cast_to=object)
    assert missing.value.code == "unknown_url"  # the provider's own error
    [event] = gw.events()
    assert (event.endpoint, event.http_status, event.outcome) == (
        "/v1/no-such-thing", 404, "client_error")
    with pytest.raises(openai.APIStatusError) as large:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x" * 5000}])
    assert (large.value.status_code, large.value.code) == (413, "request_too_large")
    assert len(gw.events(timeout=0)) == 1


def test_refused_connection_is_502_and_recorded(start_gateway, keys):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    gw = start_gateway(upstream_url=f"http://127.0.0.1:{port}/v1")
    with pytest.raises(openai.APIStatusError) as raised:
        gw.client(keys["prod"]).chat.completions.create(**CHAT)
    assert (raised.value.status_code, raised.value.code) == (502, "upstream_unreachable")
    [event] = gw.events()
    assert (event.http_status, event.outcome) == (502, "upstream_error")


def test_cut_stream_is_an_error_for_the_client_and_recorded(gw, keys, upstream):
    upstream.script("gpt-4o-mini", ["cut"])
    stream = gw.client(keys["prod"]).chat.completions.create(**CHAT, stream=True)
    with pytest.raises(openai.APIError, match="cut off|ended before"):
        list(stream)
    [event] = gw.events()
    assert (event.http_status, event.outcome) == (502, "upstream_error")
    assert event.response_id == "chatcmpl-stream1"  # known from the chunks that did arrive


def test_stalled_stream_times_out_and_is_recorded(start_gateway, keys, upstream):
    gw = start_gateway(read_timeout=0.3)
    upstream.release.clear()
    upstream.script("gpt-4o-mini", ["hold"])
    stream = gw.client(keys["prod"]).chat.completions.create(**CHAT, stream=True)
    try:
        with pytest.raises(openai.APIError, match="stopped sending"):
            list(stream)
    finally:
        upstream.release.set()
    [event] = gw.events()
    assert (event.http_status, event.outcome) == (504, "timeout")


def test_stream_without_done_but_with_usage_is_complete(gw, keys, upstream):
    upstream.script("gpt-4o-mini", ["no_done"])
    chunks = list(gw.client(keys["prod"]).chat.completions.create(**CHAT, stream=True))
    assert chunks[-1].choices[0].finish_reason == "stop"
    [event] = gw.events()
    assert (event.outcome, event.usage) == ("success", CHAT_METERS)


def test_client_disconnect_mid_stream_is_recorded_as_cancelled(gw, keys, upstream):
    upstream.script("gpt-4o-mini", ["slow"])
    stream = gw.client(keys["prod"]).chat.completions.create(**CHAT, stream=True)
    next(iter(stream))
    stream.close()
    [event] = gw.events(1)
    assert (event.http_status, event.outcome) == (499, "cancelled")
    assert event.response_id == "chatcmpl-stream1"


def test_the_upstream_key_never_leaks(gw, keys, upstream):
    upstream.script("gpt-4o-mini", ["echo_key"])
    with pytest.raises(openai.AuthenticationError) as raised:
        gw.client(keys["prod"]).chat.completions.create(**CHAT)
    assert UPSTREAM_KEY not in raised.value.response.text
    assert "<redacted>" in raised.value.body["message"]
    ok = gw.client(keys["prod"]).chat.completions.with_raw_response.create(**CHAT)
    assert UPSTREAM_KEY not in ok.http_response.text
    assert UPSTREAM_KEY not in str(ok.headers)
    gw.events(2)
    assert gw.spool_bytes() and UPSTREAM_KEY.encode() not in gw.spool_bytes()
    assert UPSTREAM_KEY not in repr(gw.server.config)


# -- health and metrics -------------------------------------------------------------------


def test_healthz_and_metrics(gw, keys, upstream):
    client = gw.client(keys["prod"])
    client.chat.completions.create(**CHAT)
    upstream.script("gpt-4o-mini", ["500"])
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(**CHAT)
    with pytest.raises(openai.AuthenticationError):
        gw.client("sk-st-wrong").models.list()
    gw.client(keys["staging"]).models.list(extra_headers={"X-Spendtrail-Workload": "fun"})

    health = json.loads(http(gw.base + "/healthz")[1])
    assert health["status"] == "ok" and health["keys"] >= 3 and health["price_entries"] == 4
    text = http(gw.base + "/metrics")[1].decode()
    lines = set(text.splitlines())
    assert ('spendtrail_gateway_attempts_total{endpoint="/v1/chat/completions",'
            'outcome="success"} 1') in lines
    assert ('spendtrail_gateway_attempts_total{endpoint="/v1/chat/completions",'
            'outcome="upstream_error"} 1') in lines
    assert 'spendtrail_gateway_rejected_total{code="invalid_api_key"} 1' in lines
    assert 'spendtrail_gateway_tokens_total{meter="input_tokens"} 12' in lines
    assert 'spendtrail_gateway_cost_total{currency="USD"} 0.0000045' in lines
    assert "spendtrail_gateway_quarantined_total 1" in lines
    assert "spendtrail_gateway_upstream_latency_seconds_count 3" in lines
    assert "spendtrail_journal_pending_files 1" in lines
    status, body = http(gw.base + "/nowhere")
    assert (status, json.loads(body)["error"]["code"]) == (404, "not_found")


# -- into the ledger ----------------------------------------------------------------------


def test_journaled_events_ingest_into_the_ledger(ledger, start_gateway, tmp_path):
    keys = seed(ledger, tmp_path)
    gw = start_gateway(ledger_url=ledger.url.render_as_string(hide_password=False))
    gw.client(keys["prod"]).chat.completions.create(**CHAT)
    list(gw.client(keys["prod"]).chat.completions.create(**CHAT, stream=True))
    gw.client(keys["staging"]).chat.completions.create(
        **CHAT, extra_headers={"X-Spendtrail-Workload": "fun"})
    gw.server.stop()  # seals the spool file

    report = Ingester(ledger).ingest_spool(gw.spool)
    assert (report.inserted, report.allocated, report.quarantined, report.rejected) == (
        3, 2, 1, [])
    with ledger.connect() as conn:
        rows = conn.execute(sa.select(events).order_by(events.c.event_id)).mappings().all()
        amounts = conn.execute(sa.select(cost_entries.c.amount_pico)).scalars().all()
    assert [r["allocation_status"] for r in rows] == ["allocated", "allocated", "quarantined"]
    assert rows[0]["cost_center"] == "CC-110" and rows[0]["workload_class"] == "user_facing"
    assert rows[2]["allocation_reasons"] == "unknown_workload_class"
    assert all(r["provider_request_id"] and r["gateway_key_id"] for r in rows)
    assert amounts == [4_500_000] * 3  # 0.0000045 USD in pico-units
