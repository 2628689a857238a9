"""UpstreamDouble: a named test double of an OpenAI-compatible provider (CometAPI-like).

It answers with OpenAI-shaped JSON and SSE streams, sends ``X-Oneapi-Request-Id`` like
CometAPI, remembers what it received, and produces faults on demand: ``script(model,
[fault, ...])`` makes the next calls for that model fail in order. Faults:

- ``500``: a JSON 500 error (with ``retry-after-ms: 1`` so SDK retries are quick)
- ``500_text``: a plain-text 500 page
- ``echo_key``: a 401 whose message echoes the key it was sent, as careless providers do
- ``timeout``: answers only after ``slow_seconds``
- ``reset``: closes the connection without answering
- ``malformed``: 200 with a body that is not JSON
- ``oversized``: 200 with a JSON body of ``oversized_bytes``
- ``cut``: a stream that stops after two chunks by dropping the connection
- ``slow``: a stream of many chunks, one every 50 ms
- ``hold``: a stream that sends its first chunk, then waits until ``release`` is set
- ``hold_first``: a stream that sends its headers, then waits until ``release`` is set
- ``no_done``: a stream that ends after its usage chunk without ``[DONE]``
- ``echo_key_sse``: a stream whose second event is an error event echoing the key
- ``echo_key_body``: a 200 completion whose content and id echo the key
- ``echo_key_header``: a normal answer with a response header echoing the key
- ``latin1_header``: a 200 completion whose ``X-Oneapi-Request-Id`` is not UTF-8 (raw bytes)
- ``truncated``: a 200 completion that promises more bytes than it sends, then closes
- ``not_http``: a 200 whose head holds a line that is not a header (``name: value``)
- ``status_<N>``: a JSON error with HTTP status N (e.g. ``status_429``, ``status_503``)

Each call in ``received`` keeps the fault it got.

Chat calls for ``claude*`` models report ``CLAUDE_USAGE``; a chat call that asks for a
``service_tier`` gets it back in the response (``default`` for ``auto``), as OpenAI does.

``answer_delay`` (seconds before answering any call) and ``chunk_delay`` (between stream
chunks) keep calls in flight. ``received`` is its log: every call it took, so every call it
would bill, with the ``X-Oneapi-Request-Id`` it gave it; the provider's own log, against which
"every call it answered has exactly one event" is checked.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from aiohttp import web

CHAT_USAGE = {
    "prompt_tokens": 12,
    "completion_tokens": 5,
    "total_tokens": 17,
    "prompt_tokens_details": {"cached_tokens": 4, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 2, "audio_tokens": 0},
}
# What a new-api gateway (CometAPI) reports for a Claude model in the OpenAI shape: cache
# writes in the prompt details, split by lifetime beside them.
CLAUDE_USAGE = {
    "prompt_tokens": 3000,
    "completion_tokens": 40,
    "total_tokens": 3040,
    "prompt_tokens_details": {"cached_tokens": 1000, "cached_creation_tokens": 1500},
    "claude_cache_creation_5_m_tokens": 1100,
    "claude_cache_creation_1_h_tokens": 400,
}
RESPONSES_USAGE = {
    "input_tokens": 20,
    "input_tokens_details": {"cached_tokens": 0},
    "output_tokens": 7,
    "output_tokens_details": {"reasoning_tokens": 3},
    "total_tokens": 27,
}
STREAM_WORDS = ["Hel", "lo", " wor", "ld", "!"]


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    request_id: str = ""
    at: float = 0.0  # time.time() when it arrived
    fault: str | None = None  # what it got, when not a plain answer

    def json(self) -> dict:
        return json.loads(self.body)


class UpstreamDouble:
    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self.received: list[Received] = []
        self.slow_seconds = 3.0
        self.oversized_bytes = 256 * 1024
        self.release = threading.Event()
        self.file_bytes = 512 * 1024
        self.answer_delay = 0.0
        self.chunk_delay = 0.0
        self._faults: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    # -- control ---------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget faults a failed test left scripted, and let held streams go."""
        with self._lock:
            self._faults.clear()
        self.release.set()

    def script(self, model: str, faults: list[str]) -> None:
        with self._lock:
            self._faults[model] = list(faults)

    def _next_fault(self, model: str | None) -> str | None:
        with self._lock:
            queue = self._faults.get(model or "")
            return queue.pop(0) if queue else None

    def last(self, path: str) -> Received:
        return next(r for r in reversed(self.received) if r.path == path)

    def start(self) -> str:
        ready = threading.Event()
        port: list[int] = []

        async def boot() -> None:
            app = web.Application(client_max_size=64 * 1024 * 1024)
            app.router.add_route("*", "/v1/{tail:.*}", self._handle)
            self._runner = web.AppRunner(app, handle_signals=False)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            port.append(self._runner.addresses[0][1])

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(boot())
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._runner.cleanup())
            self._loop.close()

        self._thread = threading.Thread(target=run, name="upstream-double", daemon=True)
        self._thread.start()
        ready.wait(10)
        return f"http://127.0.0.1:{port[0]}/v1"

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    @classmethod
    @contextmanager
    def serving(cls, api_key: str) -> Iterator[UpstreamDouble]:
        """A started double with its ``url`` set; stopped (held streams let go) at the end."""
        double = cls(api_key)
        double.url = double.start()
        try:
            yield double
        finally:
            double.release.set()
            double.stop()

    # -- serving ---------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        request_id = f"2026112200000{next(self._ids):07d}"
        call = Received(request.method, request.path, dict(request.headers), body, request_id,
                        time.time())
        self.received.append(call)
        headers = {"X-Oneapi-Request-Id": request_id}
        if self.answer_delay:
            await asyncio.sleep(self.answer_delay)
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            call.fault = "unauthorized"
            return _error(401, "invalid_api_key", "Incorrect API key provided", headers)
        try:
            payload = json.loads(body) if body else {}
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            call.fault = "bad_request"
            return _error(400, "invalid_json", "We could not parse the JSON body", headers)
        model = payload.get("model")
        fault = self._next_fault(model if isinstance(model, str) else None)
        call.fault = fault
        if fault and fault.startswith("status_"):
            status = int(fault.removeprefix("status_"))
            return _error(status, "scripted", f"scripted HTTP {status}", headers)
        if fault == "echo_key_header":
            headers["X-Debug-Upstream-Key"] = self.api_key
        if fault == "set_cookie":  # as a CDN in front of a provider does
            headers["Set-Cookie"] = "__cf_bm=caller-one; Path=/; HttpOnly"
        if fault in ("latin1_header", "truncated", "not_http"):
            return await _raw_answer(request, fault, _chat({"model": model or "gpt-4o-mini"}))
        if fault == "echo_key_body":
            answer = _chat(payload)
            answer["id"] = f"chatcmpl-{self.api_key}"
            answer["choices"][0]["message"]["content"] = f"your key is {self.api_key}"
            return web.json_response(answer, headers=headers)
        if fault == "500":
            return _error(500, "server_error", "The server had an error",
                          {**headers, "retry-after-ms": "1"})
        if fault == "500_text":
            return web.Response(status=500, text="<html>Internal Server Error</html>",
                                content_type="text/html", headers=headers)
        if fault == "echo_key":
            return _error(401, "invalid_api_key",
                          f"Incorrect API key provided: {self.api_key}. Check it.", headers)
        if fault == "timeout":
            await asyncio.sleep(self.slow_seconds)
        if fault == "reset":
            request.transport.close()
            await asyncio.sleep(0.1)
            return web.Response()
        if fault == "malformed":
            return web.Response(text='{"id": "chatcmpl-broken", "choices": [', headers=headers,
                                content_type="application/json")
        if fault == "oversized":
            padding = "x" * self.oversized_bytes
            return web.json_response({"id": "chatcmpl-big", "padding": padding}, headers=headers)

        path = request.path
        if path == "/v1/models" and request.method == "GET":
            return web.json_response({"object": "list", "data": [
                {"id": name, "object": "model", "created": 1700000000, "owned_by": "openai"}
                for name in ("gpt-4o-mini", "text-embedding-3-small", "dall-e-3")
            ]}, headers=headers)
        if path == "/v1/chat/completions":
            if payload.get("stream"):
                return await self._chat_stream(request, payload, headers, fault)
            return web.json_response(_chat(payload), headers=headers)
        if path == "/v1/completions":
            if payload.get("stream"):
                return await self._completion_stream(request, payload, headers)
            return web.json_response(_completion(payload), headers=headers)
        if path == "/v1/embeddings":
            return web.json_response(_embeddings(payload), headers=headers)
        if path == "/v1/responses":
            if payload.get("stream"):
                return await self._responses_stream(request, payload, headers)
            return web.json_response(_response(payload), headers=headers)
        if path == "/v1/images/generations":
            count = payload.get("n", 1)
            return web.json_response({"created": int(time.time()), "data": [
                {"url": f"https://images.example/{i}.png", "revised_prompt": "a cat"}
                for i in range(count)]}, headers=headers)
        if path.startswith("/v1/files/") and path.endswith("/content"):
            return web.Response(body=bytes(range(256)) * (self.file_bytes // 256),
                                content_type="application/octet-stream", headers=headers)
        if path == "/v1/moderations":
            return web.json_response({"id": "modr-1", "model": "omni-moderation-latest",
                                      "results": [{"flagged": False}]}, headers=headers)
        return _error(404, "unknown_url", f"Unknown request URL: {request.method} {path}",
                      headers)

    async def _chat_stream(self, request, payload, headers, fault) -> web.StreamResponse:
        include_usage = (payload.get("stream_options") or {}).get("include_usage") is True
        response = web.StreamResponse(headers={**headers, "Content-Type": "text/event-stream"})
        await response.prepare(request)
        if fault == "hold_first":  # a long wait for the first token
            await asyncio.to_thread(self.release.wait, 10)
        base = {"id": "chatcmpl-stream1", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": payload["model"], **_tier(payload)}
        extra = {"usage": None} if include_usage else {}
        words = STREAM_WORDS * 8 if fault == "slow" else STREAM_WORDS
        chunks = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant",
                                                              "content": ""},
                                        "finish_reason": None}], **extra}]
        chunks += [{**base, "choices": [{"index": 0, "delta": {"content": word},
                                         "finish_reason": None}], **extra} for word in words]
        chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                       **extra})
        for number, chunk in enumerate(chunks):
            if fault == "cut" and number == 2:
                request.transport.abort()
                return response
            if fault == "echo_key_sse" and number == 2:
                error = {"error": {"message": f"upstream key {self.api_key} was rejected",
                                   "type": "server_error", "code": "key_echo"}}
                await response.write(b"data: " + json.dumps(error).encode() + b"\n\n")
                await response.write_eof()
                return response
            await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
            if fault == "slow" or self.chunk_delay:
                await asyncio.sleep(self.chunk_delay or 0.05)
            if fault == "hold" and number == 0:
                await asyncio.to_thread(self.release.wait, 10)
        if include_usage:
            usage_chunk = {**base, "choices": [], "usage": _chat_usage(payload)}
            await response.write(b"data: " + json.dumps(usage_chunk).encode() + b"\n\n")
        if fault != "no_done":
            await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def _completion_stream(self, request, payload, headers) -> web.StreamResponse:
        include_usage = (payload.get("stream_options") or {}).get("include_usage") is True
        response = web.StreamResponse(headers={**headers, "Content-Type": "text/event-stream"})
        await response.prepare(request)
        base = {"id": "cmpl-stream1", "object": "text_completion", "created": 1,
                "model": payload["model"]}
        for word in STREAM_WORDS:
            chunk = {**base, "choices": [{"text": word, "index": 0, "logprobs": None,
                                          "finish_reason": None}]}
            await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        if include_usage:
            chunk = {**base, "choices": [], "usage": {"prompt_tokens": 6,
                                                      "completion_tokens": 5,
                                                      "total_tokens": 11}}
            await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def _responses_stream(self, request, payload, headers) -> web.StreamResponse:
        response = web.StreamResponse(headers={**headers, "Content-Type": "text/event-stream"})
        await response.prepare(request)
        final = _response(payload)
        started = {**final, "status": "in_progress", "output": [], "usage": None}
        events = [("response.created", {"type": "response.created", "sequence_number": 0,
                                        "response": started})]
        events += [("response.output_text.delta",
                    {"type": "response.output_text.delta", "sequence_number": i + 1,
                     "item_id": "msg_1", "output_index": 0, "content_index": 0,
                     "delta": word, "logprobs": []}) for i, word in enumerate(STREAM_WORDS)]
        events.append(("response.completed", {"type": "response.completed",
                                              "sequence_number": 99, "response": final}))
        for name, data in events:
            await response.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
        await response.write_eof()
        return response


async def _raw_answer(request: web.Request, fault: str, answer: dict) -> web.StreamResponse:
    """A response written straight to the socket, for what aiohttp would not send."""
    body = json.dumps(answer).encode()
    if fault == "latin1_header":
        head = b"X-Oneapi-Request-Id: caf\xe9\r\nContent-Length: %d\r\n" % len(body)
    elif fault == "not_http":
        head = b"this line is not a header\r\nContent-Length: %d\r\n" % len(body)
    else:  # truncated: promise twice the body, send half of it
        head = b"Content-Length: %d\r\n" % (2 * len(body))
        body = body[: len(body) // 2]
    request.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + head
                            + b"Connection: close\r\n\r\n" + body)
    request.transport.close()
    await asyncio.sleep(0.05)
    return web.Response()


def _error(status: int, code: str, message: str, headers: dict[str, str]) -> web.Response:
    return web.json_response({"error": {"message": message, "type": "invalid_request_error",
                                         "param": None, "code": code}},
                             status=status, headers=headers)


def _chat(payload: dict) -> dict:
    return {
        "id": "chatcmpl-abc123", "object": "chat.completion", "created": int(time.time()),
        "model": payload["model"],
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "Hello world!"}}],
        "usage": _chat_usage(payload),
        **_tier(payload),
    }


def _chat_usage(payload: dict) -> dict:
    return CLAUDE_USAGE if payload["model"].startswith("claude") else CHAT_USAGE


def _tier(payload: dict) -> dict:
    tier = payload.get("service_tier")
    return {} if tier is None else {"service_tier": "default" if tier == "auto" else tier}


def _completion(payload: dict) -> dict:
    return {
        "id": "cmpl-abc123", "object": "text_completion", "created": int(time.time()),
        "model": payload["model"],
        "choices": [{"text": "Hello world!", "index": 0, "logprobs": None,
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 6, "completion_tokens": 5, "total_tokens": 11},
    }


def _embeddings(payload: dict) -> dict:
    inputs = payload["input"] if isinstance(payload["input"], list) else [payload["input"]]
    vector = [0.25, -0.5, 1.0]
    if payload.get("encoding_format") == "base64":  # what the openai SDK asks for
        encoded = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return {
        "object": "list", "model": payload["model"],
        "data": [{"object": "embedding", "index": i,
                  "embedding": encoded if payload.get("encoding_format") == "base64" else vector}
                 for i in range(len(inputs))],
        "usage": {"prompt_tokens": 8 * len(inputs), "total_tokens": 8 * len(inputs)},
    }


def _response(payload: dict) -> dict:
    return {
        "id": "resp_abc123", "object": "response", "created_at": int(time.time()),
        "model": payload["model"], "status": "completed",
        "output": [{"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
                    "content": [{"type": "output_text", "text": "Hello world!",
                                 "annotations": []}]}],
        "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
        "usage": RESPONSES_USAGE,
    }
