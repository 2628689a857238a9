"""Test doubles of the providers' bill APIs, following their published paging and error shapes
(the sources are named in docs/bills.md, "Fetching bills"), and a fault injector that answers
chosen requests with an error, as a rate-limited or failing provider would.

- OpenAI ``/v1/organization/costs`` and ``/usage/completions``: ``start_time``/``end_time``
  Unix seconds, ``limit``, ``page`` = the previous ``next_page`` while ``has_more``; errors
  ``{"error": {"message", "type", "param", "code"}}``; ``Authorization: Bearer``.
- Anthropic ``/v1/organizations/cost_report`` and ``/usage_report/messages``: ``starting_at``
  and ``ending_at`` RFC 3339, the same paging; errors ``{"type": "error", "error": {"type",
  "message"}}``; ``x-api-key`` and ``anthropic-version``.
- CometAPI (new-api) ``/api/log/self``: ``p``, ``page_size``, ``start_timestamp``,
  ``end_timestamp`` (inclusive), newest first under ``data.items`` with ``data.total``.
"""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import msgspec
from aiohttp import web

Entry = dict[str, Any]
_ENCODER = msgspec.json.Encoder(decimal_format="number")


@dataclass
class Fault:
    status: int
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Faults:
    """Answers the Nth request (1-based) to a path under `prefix` with its fault; records every
    such request's path and query, and the headers sent."""

    prefix: str
    body: Callable[[int], dict[str, Any]]
    at: dict[int, Fault] = field(default_factory=dict)
    always: Fault | None = None
    seen: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    headers: list[Any] = field(default_factory=list)

    @web.middleware
    async def middleware(self, request: web.Request, handler):
        if not request.path.startswith(self.prefix):
            return await handler(request)
        self.seen.append((request.path, dict(request.query)))
        self.headers.append(request.headers.copy())  # names case-insensitive
        fault = self.always or self.at.get(len(self.seen))
        if fault is not None:
            return web.json_response(
                self.body(fault.status), status=fault.status, headers=fault.headers
            )
        return await handler(request)


def openai_error(status: int) -> dict[str, Any]:
    kind, code = {
        429: ("requests", "rate_limit_exceeded"),
        401: ("invalid_request_error", "invalid_api_key"),
    }.get(status, ("server_error", None))
    return {"error": {"message": f"simulated {status}", "type": kind, "param": None, "code": code}}


def anthropic_error(status: int) -> dict[str, Any]:
    kind = {429: "rate_limit_error", 529: "overloaded_error"}.get(status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": f"simulated {status}"}}


def new_api_error(status: int) -> dict[str, Any]:
    return {"success": False, "message": f"simulated {status}"}


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


def _rfc3339(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@dataclass
class BucketApi:
    """OpenAI's or Anthropic's daily-bucket reports: `reports` maps a path to its results per
    day; a day with no results is an empty bucket, as the providers send."""

    style: str  # "openai" or "anthropic"
    key: str
    reports: dict[str, dict[date, list[Entry]]]

    def handler(self, path: str):
        async def handle(request: web.Request) -> web.Response:
            error = anthropic_error if self.style == "anthropic" else openai_error
            if self.style == "anthropic":
                good = request.headers.get("x-api-key") == self.key and request.headers.get(
                    "anthropic-version"
                )
            else:
                good = request.headers.get("Authorization") == f"Bearer {self.key}"
            if not good:  # as OpenAI does, the message quotes the key it refused
                sent = request.headers.get("x-api-key") or request.headers.get("Authorization", "")
                sent = sent.removeprefix("Bearer ")
                body = error(401)
                body["error"]["message"] = f"Incorrect API key provided: {sent}"
                return web.json_response(body, status=401)
            query = request.query
            try:
                if self.style == "anthropic":
                    start = datetime.fromisoformat(query["starting_at"])
                    end = datetime.fromisoformat(query.get("ending_at") or "9999-01-01T00:00Z")
                else:
                    start = datetime.fromtimestamp(int(query["start_time"]), UTC)
                    end = datetime.fromtimestamp(int(query.get("end_time", 253402300799)), UTC)
                limit = int(query.get("limit", 7))
                offset = int(base64.b64decode(query["page"]).decode()) if "page" in query else 0
            except (KeyError, ValueError):
                return web.json_response(error(400), status=400)
            days = []
            day = start.date()
            while _midnight(day) < end and _midnight(day + timedelta(days=1)) <= end:
                days.append(day)
                day += timedelta(days=1)
            chosen = days[offset : offset + limit]
            more = offset + limit < len(days)
            data = [self._bucket(d, self.reports[path].get(d, [])) for d in chosen]
            next_page = base64.b64encode(str(offset + limit).encode()).decode() if more else None
            page = {"data": data, "has_more": more, "next_page": next_page}
            return web.json_response(
                {"object": "page", **page} if self.style == "openai" else page, dumps=_dumps
            )

        return handle

    def _bucket(self, day: date, results: list[Entry]) -> Entry:
        start, end = _midnight(day), _midnight(day + timedelta(days=1))
        if self.style == "anthropic":
            return {"starting_at": _rfc3339(start), "ending_at": _rfc3339(end), "results": results}
        return {
            "object": "bucket",
            "start_time": int(start.timestamp()),
            "end_time": int(end.timestamp()),
            "results": results,
        }

    def app(self, faults: Faults) -> web.Application:
        app = web.Application(middlewares=[faults.middleware])
        for path in self.reports:
            app.router.add_get(path, self.handler(path))
        return app


def _dumps(value: Any) -> str:
    return _ENCODER.encode(value).decode()  # Decimal amounts as JSON numbers, exactly


@dataclass
class NewApiLog:
    """A fixed new-api account log: rows with ``id`` and ``created_at``."""

    token: str
    rows: list[Entry]

    async def handle(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response(new_api_error(401), status=401)
        query = request.query
        page, size = int(query.get("p", 1)), int(query.get("page_size", 20))
        low = int(query.get("start_timestamp") or 0)
        high = int(query.get("end_timestamp") or 2**62)
        rows = [r for r in self.rows if low <= r["created_at"] <= high]
        rows.sort(key=lambda r: r["id"], reverse=True)
        items = rows[(page - 1) * size : page * size]
        return web.json_response(
            {
                "success": True,
                "message": "",
                "data": {"items": items, "total": len(rows), "page": page, "page_size": size},
            }
        )

    def app(self, faults: Faults) -> web.Application:
        app = web.Application(middlewares=[faults.middleware])
        app.router.add_get("/api/log/self", self.handle)
        return app


@contextmanager
def serve_app(app: web.Application) -> Iterator[str]:
    """Serve an aiohttp application on loopback from a daemon thread; yields its base URL."""
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def main() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        state["loop"], state["stop"] = asyncio.get_running_loop(), asyncio.Event()
        state["url"] = f"http://127.0.0.1:{runner.addresses[0][1]}"
        ready.set()
        try:
            await state["stop"].wait()
        finally:
            await runner.cleanup()

    thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    thread.start()
    assert ready.wait(10), "the double did not start"
    try:
        yield state["url"]
    finally:
        state["loop"].call_soon_threadsafe(state["stop"].set)
        thread.join(10)
