"""Loopback receivers for alert deliveries: an HTTP receiver (aiohttp) that records what it
is sent and answers with planned statuses, and an SMTP sink (aiosmtpd) that keeps every
message it accepts. Both run on port 0 in a daemon thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message

from aiohttp import web
from aiosmtpd.smtp import SMTP, Envelope
from bill_api_doubles import serve_app


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class HttpReceiver:
    """Answers the Nth request to any path with ``statuses[N-1]`` (200 once they run out)."""

    statuses: list[int] = field(default_factory=list)
    seen: list[Received] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append(Received(request.path, dict(request.headers), await request.read()))
        status = self.statuses[len(self.seen) - 1] if len(self.seen) <= len(self.statuses) else 200
        return web.Response(status=status, text="ok" if status == 200 else "try later")

    def on(self, path: str) -> list[Received]:
        return [r for r in self.seen if r.path == path]


@contextmanager
def http_receiver(statuses: list[int] | None = None) -> Iterator[tuple[str, HttpReceiver]]:
    receiver = HttpReceiver(list(statuses or []))
    app = web.Application()
    app.router.add_post("/{path:.*}", receiver.handle)
    with serve_app(app) as url:
        yield url, receiver


@dataclass
class Sink:
    messages: list[tuple[Envelope, Message]] = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope: Envelope) -> str:  # noqa: N802
        self.messages.append((envelope, message_from_bytes(envelope.content)))
        return "250 Message accepted for delivery"


@contextmanager
def smtp_sink() -> Iterator[tuple[int, Sink]]:
    """An SMTP server on 127.0.0.1:<port>; yields the port and the sink of messages."""
    sink = Sink()
    ready = threading.Event()
    state: dict = {}

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: SMTP(sink), "127.0.0.1", 0)
        state["loop"], state["stop"] = loop, asyncio.Event()
        state["port"] = server.sockets[0].getsockname()[1]
        ready.set()
        try:
            await state["stop"].wait()
        finally:
            server.close()
            await server.wait_closed()

    thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    thread.start()
    assert ready.wait(10), "the SMTP sink did not start"
    try:
        yield state["port"], sink
    finally:
        state["loop"].call_soon_threadsafe(state["stop"].set)
        thread.join(10)
