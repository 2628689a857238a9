"""AnthropicDouble: a test double of Anthropic's Messages API (``POST /v1/messages``, streamed
and not, and ``POST /v1/messages/count_tokens``).

Shapes follow Anthropic's published API reference: the Message object and its ``usage``
(docs.anthropic.com/en/api/messages: ``input_tokens`` uncached, ``cache_read_input_tokens``,
``cache_creation_input_tokens`` with ``cache_creation.ephemeral_5m_input_tokens`` /
``ephemeral_1h_input_tokens``, ``server_tool_use``, ``service_tier``), the streaming event
flow (docs.anthropic.com/en/docs/build-with-claude/streaming: ``message_start`` carrying
the Message with empty content, ``content_block_start``/``_delta``/``_stop``, ``ping``,
``message_delta`` whose ``usage`` counts are cumulative, ``message_stop``; ``error`` events),
errors as ``{"type": "error", "error": {"type", "message"}}`` and the ``request-id``
response header. Authentication is ``x-api-key`` or, as the anthropic SDK 2.x sends its key,
``Authorization: Bearer``; an ``anthropic-version`` header is required.

A call for the model ``claude-echo`` gets a 400 whose message echoes the key it was sent.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from dataclasses import dataclass

from aiohttp import web

USAGE = {
    "input_tokens": 50,
    "cache_creation_input_tokens": 1500,
    "cache_read_input_tokens": 1000,
    "cache_creation": {"ephemeral_5m_input_tokens": 1100, "ephemeral_1h_input_tokens": 400},
    "output_tokens": 40,
    "server_tool_use": {"web_search_requests": 1},
    "service_tier": "standard",
}
WORDS = ["Hel", "lo", " from", " Claude"]


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict


class AnthropicDouble:
    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self.received: list[Received] = []
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> str:
        ready = threading.Event()
        port: list[int] = []

        async def boot() -> None:
            app = web.Application()
            app.router.add_post("/v1/messages", self._messages)
            app.router.add_post("/v1/messages/count_tokens", self._count_tokens)
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

        self._thread = threading.Thread(target=run, name="anthropic-double", daemon=True)
        self._thread.start()
        ready.wait(10)
        return f"http://127.0.0.1:{port[0]}/v1"

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _admit(
        self, request: web.Request
    ) -> tuple[dict, dict[str, str], web.Response | None]:
        body = await request.json()
        self.received.append(Received(request.path, dict(request.headers), body))
        headers = {"request-id": f"req_double{next(self._ids):06d}"}
        if self.api_key not in (
            request.headers.get("x-api-key"),
            request.headers.get("Authorization", "").removeprefix("Bearer "),
        ):
            return body, headers, _error(401, "authentication_error", "invalid x-api-key", headers)
        if not request.headers.get("anthropic-version"):
            return (
                body,
                headers,
                _error(
                    400, "invalid_request_error", "anthropic-version: header is required", headers
                ),
            )
        if body.get("model") == "claude-echo":
            return (
                body,
                headers,
                _error(
                    400,
                    "invalid_request_error",
                    f"key {self.api_key} may not use this model",
                    headers,
                ),
            )
        return body, headers, None

    async def _count_tokens(self, request: web.Request) -> web.Response:
        _, headers, refused = await self._admit(request)
        return refused or web.json_response({"input_tokens": 42}, headers=headers)

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body, headers, refused = await self._admit(request)
        if refused is not None:
            return refused
        message = {
            "id": f"msg_double{len(self.received):04d}",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": [{"type": "text", "text": "".join(WORDS)}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": USAGE,
        }
        if not body.get("stream"):
            return web.json_response(message, headers=headers)
        response = web.StreamResponse(headers={**headers, "Content-Type": "text/event-stream"})
        await response.prepare(request)
        start_usage = {**USAGE, "output_tokens": 1}
        del start_usage["server_tool_use"]
        events = [
            (
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        **message,
                        "content": [],
                        "stop_reason": None,
                        "usage": start_usage,
                    },
                },
            ),
            (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            ),
            ("ping", {"type": "ping"}),
        ]
        events += [
            (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": word},
                },
            )
            for word in WORDS
        ]
        events += [
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            # cumulative: only output_tokens changed, and the server tool use is now known
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {
                        "output_tokens": USAGE["output_tokens"],
                        "server_tool_use": USAGE["server_tool_use"],
                    },
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
        for name, data in events:
            await response.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
        await response.write_eof()
        return response


def _error(status: int, kind: str, message: str, headers: dict[str, str]) -> web.Response:
    return web.json_response(
        {"type": "error", "error": {"type": kind, "message": message}},
        status=status,
        headers=headers,
    )
