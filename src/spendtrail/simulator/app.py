"""The simulated provider: an OpenAI-compatible aiohttp application (docs/simulator.md).

Handlers stay lean because the simulator is the upstream of throughput benchmarks: bodies are
parsed and written with msgspec, usage is arithmetic on the request, and the random draws
(fault, jitter) come from one seeded generator.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import math
import os
import random
import socket
import struct
import time
from bisect import bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from itertools import accumulate, count
from typing import Any

import msgspec
from aiohttp import web

from spendtrail.simulator.config import FAULTS, ModelPrice, SimulatorConfig
from spendtrail.simulator.usage import (
    TokenUsage,
    generation_usage,
    input_tokens,
    lorem,
    lorem_tokens,
    messages_tokens,
)
from spendtrail.simulator.usage_log import (
    LOG_CONSUME,
    LOG_ERROR,
    LogRow,
    UsageLog,
    quota_for,
    rows_csv,
    select_rows,
)

FAULT_HEADER = "X-Simulator-Fault"
REQUEST_ID_HEADER = "X-Oneapi-Request-Id"
DEFAULT_IMAGE_MODEL = "dall-e-2"  # what OpenAI uses when a request names none
DEFAULT_EMBEDDING_DIMENSIONS = 1536
MAX_REQUEST_BYTES = 64 * 1024 * 1024
_FINGERPRINT = "fp_spendtrail_sim"
_JSON = "application/json"
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.decode
# fault -> (status, message, error type, error code), as OpenAI words them
_ERRORS: dict[str, tuple[int, str, str, str | None]] = {
    "error_500": (500, "The server had an error while processing your request. Sorry about that!",
                  "server_error", None),
    "error_502": (502, "Bad gateway.", "server_error", None),
    "error_503": (503, "The server is overloaded or not ready yet.", "server_error", None),
    "error_429": (429, "Rate limit reached for requests.", "requests", "rate_limit_exceeded"),
}
# A 1x1 PNG: the smallest valid image to hand back.
_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
_PNG_B64 = base64.b64encode(_PNG).decode()


class _Refusal(Exception):
    """A request the real API refuses, answered in the OpenAI error shape."""

    def __init__(
        self, message: str, *, param: str | None = None, status: int = 400,
        code: str | None = None, kind: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.status, self.param, self.code, self.kind = status, param, code, kind


@dataclass(slots=True)
class _Call:
    request_id: str  # X-Oneapi-Request-Id: also the request_id of the call's log row
    headers: dict[str, str]
    started: float  # perf_counter, for use_time and first-token time
    created: int
    path: str
    token_name: str = ""
    model: str = ""
    price: ModelPrice | None = None
    stream: bool = False


@dataclass(slots=True)
class _Reply:
    usage: TokenUsage
    response_id: str
    body: dict[str, Any] | None = None  # a non-streaming reply
    # A streaming reply: (SSE event name or None, payload, output tokens the event carries).
    events: list[tuple[str | None, dict[str, Any], int]] | None = None
    done: bool = False  # the stream ends with `data: [DONE]`
    calls: int = 1  # billed units for per-call prices (images)


def _hex() -> str:
    return os.urandom(12).hex()


def _error_body(message: str, kind: str, param: str | None, code: str | None) -> bytes:
    return _encode({"error": {"message": message, "type": kind, "param": param, "code": code}})


def _log_error(message: str) -> str:
    """An error of the account log API, in new-api's {success, message} shape."""
    return _encode({"success": False, "message": message}).decode()


def _max_tokens(body: dict[str, Any], *names: str) -> int | None:
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise _Refusal(f"'{name}' must be a non-negative integer.", param=name)
        return value
    return None


def _include_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def _frame(name: str | None, payload: dict[str, Any]) -> bytes:
    data = b"data: " + _encode(payload) + b"\n\n"
    return data if name is None else b"event: " + name.encode() + b"\n" + data


@lru_cache(maxsize=64)
def _embedding(dimensions: int, encoding: str) -> list[float] | str:
    """One fixed unit vector per size; floats go through float32 so both encodings agree."""
    raw = [math.cos(i) for i in range(dimensions)]
    norm = math.sqrt(sum(x * x for x in raw))
    packed = struct.pack(f"<{dimensions}f", *(x / norm for x in raw))
    if encoding == "base64":
        return base64.b64encode(packed).decode()
    return list(struct.unpack(f"<{dimensions}f", packed))


def _reset(request: web.BaseRequest) -> None:
    """Drop the connection with a TCP RST (SO_LINGER 0), as a crashed peer or middlebox does."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class Simulator:
    """Request handlers and the state they share: the seeded dice and the usage log."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.log = UsageLog(config.usage_log, keep=config.access_token is not None)
        self._logging = config.usage_log is not None or config.access_token is not None
        self._rng = random.Random(config.seed)
        rates = [(fault, rate) for fault, rate in config.fault_rates.items() if rate > 0]
        self._faults = [fault for fault, _ in rates]
        self._fault_edges = list(accumulate(rate for _, rate in rates))
        # A random start keeps ids of simulator runs in the same second apart.
        self._serial = count(int.from_bytes(os.urandom(3), "big"))
        self._models = _encode({"object": "list", "data": [
            {"id": model, "object": "model", "created": 0, "owned_by": "spendtrail-simulator"}
            for model in config.prices
        ]})

    # --- request plumbing -------------------------------------------------------------------

    def _call(self, request: web.BaseRequest) -> _Call:
        now = time.time()
        serial = next(self._serial) % 1_000_000
        request_id = time.strftime("%Y%m%d%H%M%S", time.gmtime(now)) + f"{serial:06d}"
        headers = {REQUEST_ID_HEADER: request_id, "x-request-id": "req_" + _hex()}
        return _Call(request_id, headers, time.perf_counter(), int(now), request.path)

    def _authorize(self, request: web.BaseRequest) -> str:
        """The token name of the caller's key; raises a 401 refusal."""
        auth = request.headers.get("Authorization", "")
        scheme, _, key = auth.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise _Refusal(
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                status=401,
            )
        name = self.config.token_name(key)
        if name is None:
            raise _Refusal("Incorrect API key provided.", status=401, code="invalid_api_key")
        return name

    def _fault(self, request: web.BaseRequest) -> str | None:
        forced = request.headers.get(FAULT_HEADER)
        if forced is not None:
            if forced == "none":
                return None
            if forced not in FAULTS:
                raise _Refusal(
                    f"{FAULT_HEADER}: unknown fault {forced!r}; expected none or one of "
                    f"{', '.join(FAULTS)}.", param=FAULT_HEADER,
                )
            return forced
        if not self._faults:
            return None
        index = bisect_right(self._fault_edges, self._rng.random())
        return self._faults[index] if index < len(self._faults) else None

    def _delay_s(self) -> float:
        config = self.config
        jitter = self._rng.random() * config.jitter_ms if config.jitter_ms else 0.0
        return (config.latency_ms + jitter) / 1000

    def _json(self, call: _Call, data: bytes, status: int = 200) -> web.Response:
        return web.Response(body=data, status=status, headers=call.headers, content_type=_JSON)

    def _refuse(self, call: _Call, refusal: _Refusal) -> web.Response:
        body = _error_body(str(refusal), refusal.kind, refusal.param, refusal.code)
        return self._json(call, body, refusal.status)

    def _record(
        self, call: _Call, reply: _Reply | None, usage: TokenUsage, *,
        kind: int = LOG_CONSUME, content: str = "", frt_ms: int = -1,
    ) -> None:
        if not self._logging:
            return
        elapsed = time.perf_counter() - call.started
        billed = kind == LOG_CONSUME and call.price is not None
        self.log.append(LogRow(
            created_at=int(time.time()), type=kind, token_name=call.token_name,
            model_name=call.model, prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            quota=quota_for(call.price, usage, reply.calls) if billed and reply else 0,
            is_stream=call.stream, request_id=call.request_id, group=self.config.group,
            use_time=int(elapsed), response_id=reply.response_id if reply else "",
            content=content, request_path=call.path, price=call.price,
            cache_tokens=usage.cached_tokens, frt_ms=frt_ms, total_ms=int(elapsed * 1000),
        ))

    # --- the inference endpoints ------------------------------------------------------------

    async def _inference(
        self, request: web.Request, build: Callable[[web.Request, _Call, dict[str, Any]], _Reply],
        default_model: str | None = None,
    ) -> web.StreamResponse:
        call = self._call(request)
        try:
            call.token_name = self._authorize(request)
            try:
                body = _decode(await request.read())
            except msgspec.DecodeError:
                raise _Refusal("We could not parse the JSON body of your request.") from None
            if not isinstance(body, dict):
                raise _Refusal("The request body must be a JSON object.")
            fault = self._fault(request)
            model = body.get("model", default_model)
            if not isinstance(model, str) or not model:
                raise _Refusal("you must provide a model parameter", param="model")
            call.model, call.price = model, self.config.prices.get(model)
            if call.price is None:
                raise _Refusal(
                    f"The model `{model}` does not exist or you do not have access to it.",
                    param="model", status=404, code="model_not_found",
                )
            reply = build(request, call, body)
        except _Refusal as refusal:
            return self._refuse(call, refusal)

        delay = self._delay_s()
        if delay:
            await asyncio.sleep(delay)
        if fault == "reset":
            _reset(request)
            return web.Response()  # never reaches the client; aiohttp drops it quietly
        if fault == "timeout":
            await asyncio.sleep(self.config.timeout_hold_s)
        elif fault in _ERRORS:
            status, message, kind, code = _ERRORS[fault]
            message = f"{message} (simulated {fault})"
            self._record(call, None, TokenUsage(0), kind=LOG_ERROR, content=message)
            return self._json(call, _error_body(message, kind, None, code), status)
        if reply.events is not None:
            return await self._stream(request, call, reply, fault)
        return await self._respond(request, call, reply, fault)

    async def _respond(
        self, request: web.Request, call: _Call, reply: _Reply, fault: str | None
    ) -> web.StreamResponse:
        assert reply.body is not None
        body = reply.body
        if fault == "oversized":
            body = {**body, "x_simulator_padding": "x" * self.config.oversized_bytes}
        data = _encode(body)
        if fault == "malformed_json":
            data = data[: len(data) // 2]
        # The provider has done the work, so it bills even if the body never arrives whole.
        self._record(call, reply, reply.usage)
        if fault != "cut_stream":
            return self._json(call, data)
        response = web.StreamResponse(headers=call.headers)
        response.content_type = _JSON
        response.content_length = len(data)
        try:
            await response.prepare(request)
            await response.write(data[: len(data) // 2])
        except ConnectionError:
            pass
        if request.transport is not None:
            request.transport.close()
        return response

    async def _stream(
        self, request: web.Request, call: _Call, reply: _Reply, fault: str | None
    ) -> web.StreamResponse:
        assert reply.events is not None
        config = self.config
        if fault == "oversized":
            reply.events[0][1]["x_simulator_padding"] = "x" * config.oversized_bytes
        frames = [_frame(name, payload) for name, payload, _ in reply.events]
        tokens = [carried for _, _, carried in reply.events]
        if reply.done:
            frames.append(b"data: [DONE]\n\n")
            tokens.append(0)
        if fault == "malformed_json":
            frames[0] = frames[0][: len(frames[0]) // 2] + b"\n\n"
        # A cut always loses at least the last frame ([DONE] or response.completed).
        limit = min(config.cut_after_chunks, len(frames) - 1) if fault == "cut_stream" else None
        frames, tokens = frames[:limit], tokens[:limit]

        response = web.StreamResponse(headers=call.headers)
        response.content_type = "text/event-stream"
        response.headers["Cache-Control"] = "no-cache"
        sent, frt_ms = 0, -1
        try:
            await response.prepare(request)
            if config.ttft_ms:
                await asyncio.sleep(config.ttft_ms / 1000)
            frt_ms = int((time.perf_counter() - call.started) * 1000)
            if config.chunk_delay_ms:
                for index, frame in enumerate(frames):
                    if index:
                        await asyncio.sleep(config.chunk_delay_ms / 1000)
                    await response.write(frame)
                    sent += tokens[index]
            else:
                await response.write(b"".join(frames))
                sent = sum(tokens)
        except ConnectionError:
            pass  # the client left: bill what was streamed, as CometAPI does
        usage = reply.usage
        if sent != usage.visible_tokens:
            usage = TokenUsage(
                usage.prompt_tokens, usage.reasoning_tokens + sent, usage.cached_tokens,
                usage.reasoning_tokens,
            )
        self._record(call, reply, usage, frt_ms=frt_ms)
        if fault == "cut_stream" and request.transport is not None:
            request.transport.close()
        return response

    def _generation(self, call: _Call, prompt_tokens: int, max_tokens: int | None) -> TokenUsage:
        return generation_usage(
            prompt_tokens, max_tokens,
            reasoning=call.model.startswith(self.config.reasoning_prefixes),
            cache_min_tokens=self.config.cache_min_tokens,
        )

    def _pieces(self, usage: TokenUsage) -> Iterator[tuple[str, int]]:
        """The visible output as stream pieces of ``stream_chunk_tokens`` tokens each."""
        words = lorem_tokens(usage.visible_tokens)
        size = self.config.stream_chunk_tokens
        for start in range(0, len(words), size):
            piece = words[start:start + size]
            yield "".join(piece), len(piece)

    def _chat(self, request: web.Request, call: _Call, body: dict[str, Any]) -> _Reply:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(
            isinstance(message, dict) for message in messages
        ):
            raise _Refusal("'messages' must be a non-empty array of message objects.",
                           param="messages")
        max_tokens = _max_tokens(body, "max_completion_tokens", "max_tokens")
        usage = self._generation(call, messages_tokens(messages), max_tokens)
        finish = "stop" if max_tokens is None else "length"
        reply_id = "chatcmpl-" + _hex()
        call.stream = body.get("stream") is True
        base = {"id": reply_id, "created": call.created, "model": call.model,
                "system_fingerprint": _FINGERPRINT}
        if not call.stream:
            text = lorem(usage.visible_tokens)
            message = {"role": "assistant", "content": text, "refusal": None, "annotations": []}
            return _Reply(usage, reply_id, body={
                **base, "object": "chat.completion",
                "choices": [{"index": 0, "message": message, "logprobs": None,
                             "finish_reason": finish}],
                "usage": usage.chat(), "service_tier": "default",
            })
        base["object"] = "chat.completion.chunk"
        include_usage = _include_usage(body)
        if include_usage:
            base["usage"] = None  # OpenAI sends usage: null on every chunk but the last

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            return {**base, "choices": [choice]}

        events: list[tuple[str | None, dict[str, Any], int]] = [
            (None, chunk({"role": "assistant", "content": "", "refusal": None}), 0)
        ]
        events += [(None, chunk({"content": text}), n) for text, n in self._pieces(usage)]
        events.append((None, chunk({}, finish), 0))
        if include_usage:
            events.append((None, {**base, "choices": [], "usage": usage.chat()}, 0))
        return _Reply(usage, reply_id, events=events, done=True)

    def _completion(self, request: web.Request, call: _Call, body: dict[str, Any]) -> _Reply:
        prompt = body.get("prompt")
        if not isinstance(prompt, str | list):
            raise _Refusal("'prompt' must be a string or an array.", param="prompt")
        max_tokens = _max_tokens(body, "max_tokens")
        usage = self._generation(call, input_tokens(prompt), max_tokens)
        finish = "stop" if max_tokens is None else "length"
        reply_id = "cmpl-" + _hex()
        call.stream = body.get("stream") is True
        base = {"id": reply_id, "object": "text_completion", "created": call.created,
                "model": call.model, "system_fingerprint": _FINGERPRINT}

        def choices(text: str, finish_reason: str | None) -> list[dict[str, Any]]:
            return [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish_reason}]

        if not call.stream:
            text = lorem(usage.visible_tokens)
            return _Reply(usage, reply_id, body={
                **base, "choices": choices(text, finish), "usage": usage.chat(),
            })
        events: list[tuple[str | None, dict[str, Any], int]] = [
            (None, {**base, "choices": choices(text, None)}, n) for text, n in self._pieces(usage)
        ]
        events.append((None, {**base, "choices": choices("", finish)}, 0))
        if _include_usage(body):
            events.append((None, {**base, "choices": [], "usage": usage.chat()}, 0))
        return _Reply(usage, reply_id, events=events, done=True)

    def _response(self, request: web.Request, call: _Call, body: dict[str, Any]) -> _Reply:
        given = body.get("input")
        instructions = body.get("instructions")
        if isinstance(given, str):
            messages: list[dict[str, Any]] = [{"content": given}]
        elif isinstance(given, list) and given and all(isinstance(i, dict) for i in given):
            messages = given
        else:
            raise _Refusal("'input' must be a string or a non-empty array of items.",
                           param="input")
        if instructions is not None and not isinstance(instructions, str):
            raise _Refusal("'instructions' must be a string.", param="instructions")
        if instructions:
            messages = [{"content": instructions}, *messages]
        max_tokens = _max_tokens(body, "max_output_tokens")
        usage = self._generation(call, messages_tokens(messages), max_tokens)
        reply_id, message_id = "resp_" + _hex(), "msg_" + _hex()
        call.stream = body.get("stream") is True

        def response(status: str, output: list[Any], usage_object: Any) -> dict[str, Any]:
            return {
                "id": reply_id, "object": "response", "created_at": call.created,
                "status": status, "error": None, "incomplete_details": None,
                "instructions": instructions, "max_output_tokens": max_tokens,
                "model": call.model, "output": output, "parallel_tool_calls": True,
                "previous_response_id": None, "reasoning": {"effort": None, "summary": None},
                "store": True, "temperature": 1.0, "text": {"format": {"type": "text"}},
                "tool_choice": "auto", "tools": [], "top_p": 1.0, "truncation": "disabled",
                "usage": usage_object, "user": None, "metadata": {},
            }

        text = lorem(usage.visible_tokens)
        part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        message = {"id": message_id, "type": "message", "status": "completed",
                   "role": "assistant", "content": [part]}
        done = response("completed", [message], usage.responses())
        if not call.stream:
            return _Reply(usage, reply_id, body=done)
        started = response("in_progress", [], None)
        where = {"item_id": message_id, "output_index": 0, "content_index": 0}
        steps: list[tuple[str, dict[str, Any], int]] = [
            ("response.created", {"response": started}, 0),
            ("response.in_progress", {"response": started}, 0),
            ("response.output_item.added", {"output_index": 0, "item": {
                **message, "status": "in_progress", "content": []}}, 0),
            ("response.content_part.added", {**where, "part": {**part, "text": ""}}, 0),
            *[("response.output_text.delta", {**where, "delta": piece, "logprobs": []}, n)
              for piece, n in self._pieces(usage)],
            ("response.output_text.done", {**where, "text": text, "logprobs": []}, 0),
            ("response.content_part.done", {**where, "part": part}, 0),
            ("response.output_item.done", {"output_index": 0, "item": message}, 0),
            ("response.completed", {"response": done}, 0),
        ]
        events: list[tuple[str | None, dict[str, Any], int]] = [
            (name, {"type": name, "sequence_number": seq, **payload}, n)
            for seq, (name, payload, n) in enumerate(steps)
        ]
        return _Reply(usage, reply_id, events=events)

    def _embeddings(self, request: web.Request, call: _Call, body: dict[str, Any]) -> _Reply:
        given = body.get("input")
        if isinstance(given, str) or (
            isinstance(given, list) and given and all(isinstance(i, int) for i in given)
        ):
            items: list[Any] = [given]
        elif isinstance(given, list) and given and all(isinstance(i, str | list) for i in given):
            items = given
        else:
            raise _Refusal("'input' must be a string, an array of strings or token arrays.",
                           param="input")
        encoding = body.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            raise _Refusal("'encoding_format' must be 'float' or 'base64'.",
                           param="encoding_format")
        dimensions = body.get("dimensions") or DEFAULT_EMBEDDING_DIMENSIONS
        if not isinstance(dimensions, int) or not 1 <= dimensions <= 4096:
            raise _Refusal("'dimensions' must be an integer from 1 to 4096.", param="dimensions")
        vector = _embedding(dimensions, encoding)
        usage = TokenUsage(input_tokens(items))
        return _Reply(usage, "", body={
            "object": "list", "model": call.model,
            "data": [{"object": "embedding", "index": i, "embedding": vector}
                     for i in range(len(items))],
            "usage": {"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.prompt_tokens},
        })

    def _images(self, request: web.Request, call: _Call, body: dict[str, Any]) -> _Reply:
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise _Refusal("'prompt' must be a non-empty string.", param="prompt")
        n = body.get("n") or 1
        if not isinstance(n, int) or not 1 <= n <= 10:
            raise _Refusal("'n' must be an integer from 1 to 10.", param="n")
        default_format = "b64_json" if call.model.startswith("gpt-image") else "url"
        form = body.get("response_format") or default_format
        if form == "url":
            base = f"{request.scheme}://{request.host}/v1/images/files/"
            data = [{"url": f"{base}img-{_hex()}.png", "revised_prompt": prompt}
                    for _ in range(n)]
        elif form == "b64_json":
            data = [{"b64_json": _PNG_B64, "revised_prompt": prompt} for _ in range(n)]
        else:
            raise _Refusal("'response_format' must be 'url' or 'b64_json'.",
                           param="response_format")
        return _Reply(TokenUsage(0), "", body={"created": call.created, "data": data}, calls=n)

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        return await self._inference(request, self._chat)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._inference(request, self._completion)

    async def responses(self, request: web.Request) -> web.StreamResponse:
        return await self._inference(request, self._response)

    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        return await self._inference(request, self._embeddings)

    async def images(self, request: web.Request) -> web.StreamResponse:
        return await self._inference(request, self._images, DEFAULT_IMAGE_MODEL)

    # --- everything else --------------------------------------------------------------------

    async def models(self, request: web.Request) -> web.Response:
        call = self._call(request)
        try:
            self._authorize(request)
        except _Refusal as refusal:
            return self._refuse(call, refusal)
        return self._json(call, self._models)

    async def image_file(self, request: web.Request) -> web.Response:
        return web.Response(body=_PNG, content_type="image/png")

    def _log_rows(self, request: web.Request) -> list[tuple[int, LogRow]]:
        """The rows a log page asks for; raises 401 or 400 for a bad token or filter."""
        auth = request.headers.get("Authorization", "")
        token = self.config.access_token or ""
        if not hmac.compare_digest(auth.removeprefix("Bearer ").strip(), token):
            raise web.HTTPUnauthorized(text=_log_error("invalid access token"), content_type=_JSON)
        assert self.log.rows is not None
        try:
            return select_rows(self.log.rows, request.query)
        except ValueError as exc:
            raise web.HTTPBadRequest(text=_log_error(str(exc)), content_type=_JSON) from None

    async def log_page(self, request: web.Request) -> web.Response:
        """``/api/log/self``: newest first, pages from p=1."""
        rows = self._log_rows(request)
        try:
            page = max(int(request.query.get("p", 1)), 1)
            size = min(max(int(request.query.get("page_size", 10)), 1), 100)
        except ValueError:
            message = _log_error("p, page_size: expected integers")
            raise web.HTTPBadRequest(text=message, content_type=_JSON) from None
        newest = rows[::-1][(page - 1) * size: page * size]
        items = [row.api_item(row_id) for row_id, row in newest]
        return web.Response(body=_encode({"success": True, "message": "", "data": {
            "items": items, "total": len(rows), "page": page, "page_size": size,
        }}), content_type=_JSON)

    async def log_export(self, request: web.Request) -> web.Response:
        """``/api/log/self/export``: the matching rows as the CSV the usage log holds."""
        return web.Response(
            text=rows_csv(self._log_rows(request)), content_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="log.csv"'},
        )


def make_app(config: SimulatorConfig) -> web.Application:
    """The simulator as an aiohttp application; opens the usage log, closed on cleanup."""
    simulator = Simulator(config)
    app = web.Application(client_max_size=MAX_REQUEST_BYTES)
    add_post, add_get = app.router.add_post, app.router.add_get
    add_post("/v1/chat/completions", simulator.chat_completions)
    add_post("/v1/completions", simulator.completions)
    add_post("/v1/responses", simulator.responses)
    add_post("/v1/embeddings", simulator.embeddings)
    add_post("/v1/images/generations", simulator.images)
    add_get("/v1/models", simulator.models)
    add_get("/v1/images/files/{name}", simulator.image_file)
    if config.access_token is not None:
        add_get("/api/log/self", simulator.log_page)
        add_get("/api/log/self/export", simulator.log_export)

    async def close_log(app: web.Application) -> None:
        simulator.log.close()

    app.on_cleanup.append(close_log)
    return app
