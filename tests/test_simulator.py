"""The provider simulator through the real `openai` SDK on loopback: endpoints, deterministic
usage, headers, auth, and the CometAPI-format usage log.

The helpers at the top are shared with test_simulator_faults.py and test_simulator_cli.py.
"""

from __future__ import annotations

import base64
import csv
import json
import re
import struct
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from decimal import ROUND_HALF_UP, Decimal
from email.message import Message
from pathlib import Path
from typing import Any

import openai
import pytest

from spendtrail.simulator import (
    CSV_HEADER,
    DEFAULT_PRICES,
    ModelPrice,
    SimulatorConfig,
    SimulatorConfigError,
    load_keys,
    load_prices,
    quota_for,
    serve_in_thread,
)
from spendtrail.simulator.config import default_token_name
from spendtrail.simulator.usage import TokenUsage

KEY = "sk-sim-test-0123456789abcdefWXYZ"  # long: its token name is its last 4 characters
TOKEN_NAME = "key-WXYZ"
HELLO = [{"role": "user", "content": "hello"}]


class Simulators:
    """Starts simulators, each with its own usage log; all stop when the test ends."""

    def __init__(self, tmp_path: Path, stack: ExitStack) -> None:
        self._tmp, self._stack, self._count = tmp_path, stack, 0

    def start(self, **config: Any) -> tuple[str, Path]:
        self._count += 1
        log = self._tmp / f"usage-{self._count}.csv"
        config.setdefault("usage_log", log)
        url = self._stack.enter_context(serve_in_thread(SimulatorConfig(**config)))
        return url, log

    def client(self, url: str, key: str = KEY, timeout: float = 5.0) -> openai.OpenAI:
        return self._stack.enter_context(
            openai.OpenAI(base_url=url, api_key=key, max_retries=0, timeout=timeout)
        )


def running_simulators(tmp_path: Path) -> Iterator[Simulators]:
    """The `sims` fixture; other modules make it theirs with ``pytest.fixture(name="sims")``."""
    with ExitStack() as stack:
        yield Simulators(tmp_path, stack)


sims = pytest.fixture(running_simulators, name="sims")


def read_log(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def wait_for_rows(log: Path, count: int, seconds: float = 5.0) -> list[dict[str, str]]:
    """The log is written by the server thread once a call ends: a stream's row after its
    last frame reached the client, a held or abandoned call's a bit later."""
    deadline = time.monotonic() + seconds
    while len(rows := read_log(log)) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return rows


def raw(
    url: str, path: str, body: Any = None, *, key: str | None = KEY,
    headers: dict[str, str] | None = None,
) -> tuple[int, Message, bytes]:
    """One plain HTTP call, for what the SDK hides (SSE framing, missing auth, other routes);
    a POST when there is a body (bytes are sent as they are)."""
    sent = {"Content-Type": "application/json", **(headers or {})}
    if key is not None:
        sent["Authorization"] = f"Bearer {key}"
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url.removesuffix("/v1") + path, data=data, headers=sent)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def expected_quota(prompt: int, completion: int, price: ModelPrice, cached: int = 0) -> int:
    """The documented rule, written out independently of the simulator's code."""
    usd = ((prompt - cached) * price.input + cached * price.cached_rate
           + completion * price.output) / Decimal(1_000_000)
    return max(int((usd * 500_000).quantize(Decimal(1), ROUND_HALF_UP)), 1 if usd else 0)


# --- chat completions ------------------------------------------------------------------------

def test_chat_usage_follows_the_documented_rule_and_headers_identify_the_call(sims):
    url, log = sims.start()
    client = sims.client(url)
    messages = [
        {"role": "system", "content": "You are terse."}, {"role": "user", "content": "x" * 40},
    ]
    raw_response = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=messages
    )
    completion = raw_response.parse()
    # 3 (primer) + 4 + ceil(14/4) + 4 + 40/4 = 25; output min(256, 16 + 25 // 2) = 28
    assert completion.usage.prompt_tokens == 25
    assert completion.usage.completion_tokens == 28
    assert completion.usage.total_tokens == 53
    assert completion.usage.prompt_tokens_details.cached_tokens == 0
    assert len(completion.choices[0].message.content.split()) == 28
    assert completion.choices[0].finish_reason == "stop"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "gpt-4o-mini"
    request_id = raw_response.headers["X-Oneapi-Request-Id"]
    assert re.fullmatch(r"\d{20}", request_id)
    assert re.fullmatch(r"req_[0-9a-f]{24}", raw_response.headers["x-request-id"])

    [row] = read_log(log)
    assert row == {
        "created_at": row["created_at"], "type": "2", "token_name": TOKEN_NAME,
        "model_name": "gpt-4o-mini", "prompt_tokens": "25", "completion_tokens": "28",
        # (25 x 0.15 + 28 x 0.60) / 1M USD x 500,000 = 10.275 -> 10
        "quota": "10", "is_stream": "false", "request_id": request_id, "group": "default",
    }


def test_same_request_same_usage_and_max_tokens_sets_the_output(sims):
    url, _ = sims.start()
    client = sims.client(url)
    first = client.chat.completions.create(model="gpt-4o", messages=HELLO)
    again = client.chat.completions.create(model="gpt-4o", messages=HELLO)
    longer = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hello" * 50}]
    )
    capped = client.chat.completions.create(model="gpt-4o", messages=HELLO, max_tokens=7)
    newer = client.chat.completions.create(model="gpt-4o", messages=HELLO, max_completion_tokens=3)
    assert first.usage == again.usage
    assert first.choices[0].message.content == again.choices[0].message.content
    assert first.id != again.id
    assert longer.usage.prompt_tokens > first.usage.prompt_tokens
    assert (capped.usage.completion_tokens, capped.choices[0].finish_reason) == (7, "length")
    assert newer.usage.completion_tokens == 3


def test_request_ids_are_unique_per_call(sims):
    url, _ = sims.start()
    client = sims.client(url)
    ids = {
        client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=HELLO)
        .headers["X-Oneapi-Request-Id"]
        for _ in range(20)
    }
    assert len(ids) == 20


def test_reasoning_models_spend_half_the_output_on_reasoning(sims):
    url, _ = sims.start()
    result = sims.client(url).chat.completions.create(
        model="o4-mini", messages=HELLO, max_completion_tokens=10
    )
    assert result.usage.completion_tokens == 10
    assert result.usage.completion_tokens_details.reasoning_tokens == 5
    assert len(result.choices[0].message.content.split()) == 5


def test_long_prompts_report_cached_tokens_and_bill_them_at_the_cached_price(sims):
    url, log = sims.start(cache_min_tokens=1024)
    client = sims.client(url)
    long = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "y" * 5000}]
    )
    short = client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    # 3 + 4 + 1250 = 1257 prompt tokens: the longest multiple of 128 below it is 1152
    assert long.usage.prompt_tokens == 1257
    assert long.usage.prompt_tokens_details.cached_tokens == 1152
    assert short.usage.prompt_tokens_details.cached_tokens == 0
    row = read_log(log)[0]
    price = DEFAULT_PRICES["gpt-4o-mini"]
    # (105 x 0.15 + 1152 x 0.075 + 256 x 0.6) / 2 = 128.4975 -> 128
    assert int(row["quota"]) == expected_quota(1257, 256, price, cached=1152) == 128


def _collect(stream) -> tuple[list[Any], str]:
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return chunks, text


def test_chat_stream_without_include_usage_carries_no_usage(sims):
    url, log = sims.start()
    client = sims.client(url)
    whole = client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    chunks, text = _collect(
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True)
    )
    assert text == whole.choices[0].message.content
    assert all(chunk.usage is None and chunk.choices for chunk in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert len({chunk.id for chunk in chunks}) == 1
    rows = wait_for_rows(log, 2)
    assert rows[1]["is_stream"] == "true"
    assert rows[1]["completion_tokens"] == rows[0]["completion_tokens"]


def test_chat_stream_with_include_usage_ends_with_a_usage_chunk_like_openai(sims):
    url, _ = sims.start()
    client = sims.client(url)
    whole = client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, max_tokens=9)
    chunks, text = _collect(client.chat.completions.create(
        model="gpt-4o-mini", messages=HELLO, max_tokens=9, stream=True,
        stream_options={"include_usage": True},
    ))
    *content, last = chunks
    assert last.choices == [] and last.usage == whole.usage
    assert all(chunk.usage is None for chunk in content)
    assert content[-1].choices[0].finish_reason == "length"
    assert text == whole.choices[0].message.content


def test_chat_stream_is_sse_framed_and_ends_with_done(sims):
    url, _ = sims.start(stream_chunk_tokens=4)
    status, headers, body = raw(url, "/v1/chat/completions", {
        "model": "gpt-4o-mini", "messages": HELLO, "max_tokens": 10, "stream": True,
        "stream_options": {"include_usage": True},
    })
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    assert headers["X-Oneapi-Request-Id"]
    frames = body.decode().split("\n\n")
    assert frames[-2:] == ["data: [DONE]", ""]
    payloads = [json.loads(frame.removeprefix("data: ")) for frame in frames[:-2]]
    # role, 10 tokens in chunks of 4 (4, 4, 2), finish, usage
    assert [len(p["choices"][0]["delta"].get("content", "").split()) for p in payloads[1:4]] == [
        4, 4, 2]
    assert len(payloads) == 6
    assert payloads[-1]["choices"] == [] and payloads[-1]["usage"]["completion_tokens"] == 10


# --- the other endpoints ---------------------------------------------------------------------

def test_legacy_completions_plain_and_streamed(sims):
    url, log = sims.start()
    client = sims.client(url)
    whole = client.completions.create(model="gpt-4o-mini", prompt="abcdefgh", max_tokens=5)
    assert whole.id.startswith("cmpl-")
    assert (whole.usage.prompt_tokens, whole.usage.completion_tokens) == (2, 5)
    assert whole.choices[0].text == "lorem ipsum dolor sit amet"
    chunks = list(client.completions.create(
        model="gpt-4o-mini", prompt="abcdefgh", max_tokens=5, stream=True,
        stream_options={"include_usage": True},
    ))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole.choices[0].text
    assert chunks[-1].usage.completion_tokens == 5
    assert [row["is_stream"] for row in wait_for_rows(log, 2)] == ["false", "true"]


def test_embeddings_in_both_encodings_agree_and_bill_input_only(sims):
    url, log = sims.start()
    client = sims.client(url)
    # The SDK asks for base64 by default and decodes it.
    b64 = client.embeddings.create(model="text-embedding-3-small", input=["abcd", "abcdefgh"])
    floats = client.embeddings.create(
        model="text-embedding-3-small", input="abcd", encoding_format="float", dimensions=8
    )
    tokens = client.embeddings.create(model="text-embedding-3-large", input=[[1, 2, 3], [4]])
    assert [d.index for d in b64.data] == [0, 1]
    assert len(b64.data[0].embedding) == 1536
    assert b64.usage.prompt_tokens == b64.usage.total_tokens == 3
    assert len(floats.data[0].embedding) == 8
    assert abs(sum(x * x for x in floats.data[0].embedding) - 1) < 1e-5
    short = client.embeddings.create(model="text-embedding-3-small", input="abcd", dimensions=8)
    assert short.data[0].embedding == floats.data[0].embedding
    assert tokens.usage.prompt_tokens == 4
    rows = read_log(log)
    assert [(r["prompt_tokens"], r["completion_tokens"]) for r in rows][:1] == [("3", "0")]
    # 3 x 0.02 / 2 = 0.03 quota: a priced call never bills 0
    assert rows[0]["quota"] == "1"


def test_responses_api_plain_and_streamed(sims):
    url, log = sims.start()
    client = sims.client(url)
    response = client.responses.create(
        model="gpt-4o-mini", input="abcdefgh", instructions="be brief", max_output_tokens=6
    )
    # 3 + (4 + 2) + (4 + 2) = 15
    assert response.id.startswith("resp_") and response.status == "completed"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (15, 6)
    assert response.output_text == "lorem ipsum dolor sit amet consectetur"
    parts = [{"type": "input_text", "text": "hi"}]
    items = client.responses.create(
        model="o4-mini", input=[{"role": "user", "content": parts}], max_output_tokens=8
    )
    assert items.usage.output_tokens_details.reasoning_tokens == 4
    events = list(client.responses.create(
        model="gpt-4o-mini", input="abcdefgh", instructions="be brief", max_output_tokens=6,
        stream=True,
    ))
    assert events[0].type == "response.created"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == response.output_text
    assert events[-1].type == "response.completed"
    assert events[-1].response.usage == response.usage
    rows = wait_for_rows(log, 3)
    assert [(r["is_stream"], r["completion_tokens"]) for r in rows] == [
        ("false", "6"), ("false", "8"), ("true", "6")]


def test_responses_stream_helper_of_the_sdk(sims):
    url, _ = sims.start()
    with sims.client(url).responses.stream(model="gpt-4o-mini", input="hello") as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert final.output_text == text and final.usage.output_tokens == len(text.split())


def test_images_are_billed_per_image_in_both_formats(sims):
    url, log = sims.start()
    client = sims.client(url)
    b64 = client.images.generate(model="dall-e-3", prompt="a cat", response_format="b64_json")
    assert base64.b64decode(b64.data[0].b64_json).startswith(b"\x89PNG")
    urls = client.images.generate(model="dall-e-3", prompt="a cat", n=2)
    assert len(urls.data) == 2
    with urllib.request.urlopen(urls.data[0].url, timeout=5) as image:
        assert image.read().startswith(b"\x89PNG")
    # 0.04 USD per image x 500,000
    assert [row["quota"] for row in read_log(log)] == ["20000", "40000"]


def test_models_lists_the_priced_models(sims):
    url, _ = sims.start(prices={"m-one": ModelPrice(input=Decimal(1)), "m-two": ModelPrice()})
    assert [model.id for model in sims.client(url).models.list()] == ["m-one", "m-two"]


# --- refusals --------------------------------------------------------------------------------

def test_invalid_or_missing_key_gets_401_in_the_openai_error_shape(sims):
    url, log = sims.start()
    with pytest.raises(openai.AuthenticationError) as caught:
        sims.client(url, key="invalid-key-0123456789").chat.completions.create(
            model="gpt-4o-mini", messages=HELLO
        )
    error = caught.value.body
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == "invalid_api_key"
    assert "invalid-key" not in error["message"]
    assert caught.value.response.headers["X-Oneapi-Request-Id"]
    status, _, body = raw(url, "/v1/models", key=None)
    assert status == 401 and json.loads(body)["error"]["type"] == "invalid_request_error"
    assert read_log(log) == []


def test_configured_keys_are_the_only_ones_accepted(sims):
    url, _ = sims.start(keys={"team-key-1": "team-one"})
    sims.client(url, key="team-key-1").models.list()
    with pytest.raises(openai.AuthenticationError):
        sims.client(url, key=KEY).models.list()


def test_unknown_model_and_bad_body_are_refused_like_openai(sims):
    url, log = sims.start()
    client = sims.client(url)
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="no-such-model", messages=HELLO)
    assert missing.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="gpt-4o-mini", messages=[])
    assert bad.value.body["param"] == "messages"
    with pytest.raises(openai.BadRequestError) as bad_max:
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, max_tokens=-1)
    assert bad_max.value.body["param"] == "max_tokens"
    status, _, body = raw(url, "/v1/chat/completions", b'{"model": "gpt-4o-mini",')
    assert status == 400 and "JSON" in json.loads(body)["error"]["message"]
    assert read_log(log) == []


# --- the usage log ---------------------------------------------------------------------------

def test_usage_log_matches_the_calls_and_never_holds_a_key(sims):
    mapped = "sk-team-alpha-secret-0001"
    url, log = sims.start(keys={mapped: "team-alpha", KEY: TOKEN_NAME})
    seen = []
    for key, model in [(mapped, "gpt-4o-mini"), (KEY, "gpt-4o"), (mapped, "o4-mini")]:
        response = sims.client(url, key=key).chat.completions.with_raw_response.create(
            model=model, messages=HELLO, max_tokens=12
        )
        usage = response.parse().usage
        seen.append((response.headers["X-Oneapi-Request-Id"], model, usage))
    text = log.read_text()
    assert text.splitlines()[0] == ",".join(CSV_HEADER)
    assert mapped not in text and KEY not in text
    rows = read_log(log)
    assert [r["request_id"] for r in rows] == [request_id for request_id, _, _ in seen]
    assert [r["token_name"] for r in rows] == ["team-alpha", TOKEN_NAME, "team-alpha"]
    for row, (_, model, usage) in zip(rows, seen, strict=True):
        assert int(row["prompt_tokens"]) == usage.prompt_tokens
        assert int(row["completion_tokens"]) == usage.completion_tokens
        assert int(row["quota"]) == expected_quota(
            usage.prompt_tokens, usage.completion_tokens, DEFAULT_PRICES[model]
        )


def test_usage_log_appends_to_an_existing_log_and_refuses_a_foreign_file(sims, tmp_path):
    log = tmp_path / "shared.csv"
    for _ in range(2):
        url, _ = sims.start(usage_log=log)
        sims.client(url).chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert len(read_log(log)) == 2 and log.read_text().count("created_at") == 1
    foreign = tmp_path / "foreign.csv"
    foreign.write_text("a,b\n1,2\n")
    with pytest.raises(SimulatorConfigError, match="foreign.csv: exists with header"):
        sims.start(usage_log=foreign)


def test_log_pages_like_api_log_self(sims):
    url, log = sims.start(access_token="acc-token", keys={KEY: "team-a", "other-key": "team-b"})
    sims.client(url).chat.completions.create(model="gpt-4o-mini", messages=HELLO, max_tokens=4)
    sims.client(url, key="other-key").embeddings.create(model="text-embedding-3-small", input="a")
    status, _, body = raw(url, "/api/log/self?p=1&page_size=10", key="acc-token")
    page = json.loads(body)
    assert status == 200 and page["success"] is True and page["data"]["total"] == 2
    newest, oldest = page["data"]["items"]
    assert (newest["model_name"], oldest["model_name"]) == ("text-embedding-3-small", "gpt-4o-mini")
    other = json.loads(oldest["other"])
    assert other["model_ratio"] == 0.075 and other["completion_ratio"] == 4
    assert other["model_price"] == -1 and other["request_path"] == "/v1/chat/completions"
    assert oldest["request_id"] == read_log(log)[0]["request_id"]
    assert oldest["response_id"].startswith("chatcmpl-")

    _, _, filtered = raw(url, "/api/log/self?token_name=team-b", key="acc-token")
    assert [i["token_name"] for i in json.loads(filtered)["data"]["items"]] == ["team-b"]
    _, _, second = raw(url, "/api/log/self?p=2&page_size=1", key="acc-token")
    assert [i["model_name"] for i in json.loads(second)["data"]["items"]] == ["gpt-4o-mini"]
    status, headers, exported = raw(url, "/api/log/self/export", key="acc-token")
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    assert exported.decode() == log.read_text()
    assert raw(url, "/api/log/self", key=KEY)[0] == 401
    assert raw(url, "/api/log/self?type=x", key="acc-token")[0] == 400


def test_log_pages_are_off_without_an_access_token(sims):
    url, _ = sims.start()
    assert raw(url, "/api/log/self")[0] == 404


# --- units -----------------------------------------------------------------------------------

def test_quota_is_exact_and_rounds_half_up_with_a_minimum_of_one():
    price = ModelPrice(input=Decimal("1"), output=Decimal("3"))
    # 1 token at 1 USD/1M = 0.5 quota -> 1 (half up); 3 tokens = 1.5 -> 2; 5 = 2.5 -> 3
    assert [quota_for(price, TokenUsage(n)) for n in (1, 3, 5)] == [1, 2, 3]
    assert quota_for(price, TokenUsage(0)) == 0
    assert quota_for(price, TokenUsage(1_000_000, 1_000_000)) == 2_000_000  # 4 USD
    tiny = ModelPrice(input=Decimal("0.01"))
    assert quota_for(tiny, TokenUsage(1)) == 1  # 0.005 quota: never 0 for a priced call
    assert quota_for(ModelPrice(per_call=Decimal("0.04")), TokenUsage(0), calls=3) == 60_000


def test_default_token_names_never_contain_the_key():
    assert default_token_name("sk-abcdefghijklmnop1234") == "key-1234"
    short = default_token_name("sk-short")
    assert re.fullmatch(r"key-[0-9a-f]{8}", short) and "short" not in short
    assert SimulatorConfig().token_name("invalid-anything") is None
    assert SimulatorConfig().token_name("") is None


def test_price_file_is_read_exactly_and_errors_name_the_model(tmp_path):
    good = tmp_path / "prices.yaml"
    good.write_text("m1: {input: 0.1, output: 0.3, cached_input: 0.05}\nimg: {per_call: 0.04}\n")
    prices = load_prices(good)
    assert prices["m1"] == ModelPrice(
        input=Decimal("0.1"), output=Decimal("0.3"), cached_input=Decimal("0.05"))
    assert prices["img"].per_call == Decimal("0.04")
    bad = tmp_path / "bad.yaml"
    bad.write_text("m1: {input: cheap}\n")
    with pytest.raises(SimulatorConfigError, match=r"bad.yaml: model 'm1': input: expected"):
        load_prices(bad)
    bad.write_text("m1: {inptu: 1}\n")
    with pytest.raises(SimulatorConfigError, match="unknown field 'inptu'"):
        load_prices(bad)
    bad.write_text("m1: {input: -1}\n")
    with pytest.raises(SimulatorConfigError, match="non-negative"):
        load_prices(bad)


def test_keys_file_maps_keys_to_token_names(tmp_path):
    path = tmp_path / "keys.yaml"
    path.write_text("team-a: sk-aaa\nteam-b: sk-bbb\n")
    assert load_keys(path) == {"sk-aaa": "team-a", "sk-bbb": "team-b"}
    path.write_text("team-a: sk-aaa\nteam-b: sk-aaa\n")
    with pytest.raises(SimulatorConfigError, match="already used"):
        load_keys(path)


def test_embedding_base64_is_little_endian_float32(sims):
    url, _ = sims.start()
    status, _, body = raw(url, "/v1/embeddings", {
        "model": "text-embedding-3-small", "input": "a", "dimensions": 4,
        "encoding_format": "base64",
    })
    vector = struct.unpack("<4f", base64.b64decode(json.loads(body)["data"][0]["embedding"]))
    assert status == 200 and abs(sum(x * x for x in vector) - 1) < 1e-6


def test_server_in_thread_reports_a_bad_usage_log_to_the_caller(tmp_path):
    with pytest.raises(SimulatorConfigError, match="cannot open the usage log"):
        with serve_in_thread(SimulatorConfig(usage_log=tmp_path / "missing" / "log.csv")):
            pass
