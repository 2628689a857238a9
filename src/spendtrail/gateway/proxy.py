"""Forwarding one call to the provider and recording it as exactly one UsageEvent.

The event is appended to the journal before the client gets its last byte: before the body
of a complete response, and before the final event of a stream (``[DONE]`` or the Responses
API's terminal event). The gateway never retries; every attempt is its own event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
from aiohttp import web
from multidict import CIMultiDict

from spendtrail.events.ids import new_event_id
from spendtrail.events.linking import IDEMPOTENCY_HEADER, RETRY_HEADER, RetryLinker, retry_count
from spendtrail.events.model import Outcome, Usage, UsageEvent, outcome_for_status
from spendtrail.events.usage import (
    INCLUDE_USAGE,
    METERED,
    ResponseFacts,
    SseTracker,
    facts_from_body,
    json_object,
    provider_request_id,
)
from spendtrail.gateway.budget import Outgoing
from spendtrail.gateway.client import (
    Malformed,
    Unreachable,
    UpstreamClient,
    UpstreamError,
    UpstreamResponse,
)
from spendtrail.gateway.config import GatewayConfig
from spendtrail.gateway.errors import error_body, error_response, sse_error
from spendtrail.gateway.headers import check_headers
from spendtrail.gateway.identity import CONTEXT_PREFIX, Identity, Refusal, resolve
from spendtrail.gateway.keys import GatewayKey
from spendtrail.gateway.metrics import Metrics
from spendtrail.gateway.routes import Upstream
from spendtrail.gateway.state import Snapshot
from spendtrail.journal.backend import Journal
from spendtrail.money import from_pico
from spendtrail.pricing import INCOMPLETE, CostBreakdown, price_usage
from spendtrail.redact import PLACEHOLDER, StreamMask, mask, redact

log = logging.getLogger("spendtrail.gateway")

KNOWN = METERED | {"/v1/models"}

_HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "host", "content-length",
})
# The client's credentials (a gateway key, in either scheme) never go upstream.
_NOT_UPSTREAM = _HOP_BY_HOP | {"authorization", "x-api-key", "accept-encoding", "cookie"}
# The body reaches the client decompressed, so the provider's encoding headers do not apply.
_NOT_DOWNSTREAM = _HOP_BY_HOP | {"content-encoding", "set-cookie", "date", "server"}

_DRAIN_SECONDS = 1.0
# The event id of a call the budgets admitted, kept on its request.
_ADMITTED = web.RequestKey("spendtrail_admitted", str)
_encode = msgspec.json.Encoder()


class _Stream(web.StreamResponse):
    """A response whose headers go out with its first bytes, in one send, as aiohttp's
    ``web.Response`` does: a stream that has all arrived is one write, not four."""

    _send_headers_immediately = False


class _ClientGone(Exception):
    """The client closed the connection while we were writing to it."""


@dataclass(slots=True)
class Call:
    """One attempt in flight: what the event will say, gathered as the call proceeds."""

    event_id: str
    request_id: str
    attempt: int
    started_at: datetime
    endpoint: str
    key: GatewayKey
    identity: Identity
    model_requested: str | None
    upstream: Upstream
    provider_request_id: str | None = None
    recorded: bool = False
    delivered: bool = False  # a stream's terminal event was written to the client
    cost: str = ""  # the X-Spendtrail-Cost value, once recorded


class Proxy:
    def __init__(self, config: GatewayConfig, spool: Journal, metrics: Metrics) -> None:
        self.config = config
        self.spool = spool
        self.metrics = metrics
        self.linker = RetryLinker()
        self.snapshot: Snapshot | None = None
        self.in_flight: set[asyncio.Task] = set()  # requests being handled, for the drain
        self.client: UpstreamClient | None = None  # made on the event loop (app.py)
        self.routes = config.routes

    # -- entry ----------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        started = datetime.now(UTC)
        path = request.path
        label = path if path in KNOWN else "other"
        task = asyncio.current_task()
        self.in_flight.add(task)
        try:
            response = await self._handle(request, started, path)
        finally:
            self.in_flight.discard(task)
            # an admitted call that ends without its event gives its reservation back
            if (call_id := request.get(_ADMITTED)) is not None:
                self.config.budget.release(call_id)
        self.metrics.requests[label, response.status] += 1
        return response

    async def _handle(
        self, request: web.Request, started: datetime, path: str
    ) -> web.StreamResponse:
        if any(part in (".", "..") for part in path.split("/")):
            # The upstream would resolve them: /v1/../x must not reach outside its /v1.
            return self._refuse(Refusal(400, "the path must not contain . or .. segments",
                                        "invalid_path", None))
        bad_header = check_headers(request.headers)
        if bad_header is not None:
            return self._refuse(bad_header)
        snapshot = self.snapshot
        if snapshot is None:  # the start-up load has not finished (see /readyz)
            return self._refuse(Refusal(503, "the gateway is starting: its keys, registry "
                                        "and prices are not loaded yet", "gateway_not_ready",
                                        None))
        key = self._authenticate(request.headers, snapshot, started)
        if isinstance(key, Refusal):
            return self._refuse(key)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._refuse(Refusal(
                413, f"request body exceeds {self.config.max_request_bytes} bytes",
                "request_too_large", None))
        found = snapshot.registry_at(started)
        identity = resolve(key, request.headers, found[1] if found else None,
                           self.config.policy)
        if isinstance(identity, Refusal):
            return self._refuse(identity)
        payload = json_object(body) if path in METERED else None
        model = _label(payload.get("model")) if payload else None
        routed = model if payload is not None else _model_of(request, body)
        route = self.routes.pick(routed)
        if route is None:
            named = (f"the model '{routed}' matches none of" if routed
                     else "the call names no model and there is no default in")
            return self._refuse(Refusal(400, f"no upstream for this call: {named} "
                                        f"{self.routes.describe()}", "spendtrail_no_route",
                                        "model"))
        event_id = new_event_id()
        price = snapshot.catalog.lookup(route.provider, model, started) if model else None
        budget = await self.config.budget.check(
            identity.budgeted, started, event_id, Outgoing(path, payload, len(body), price))
        if not budget.allow:
            self.metrics.rejected["budget_exceeded"] += 1
            return web.json_response({"error": budget.refusal}, status=429,
                                     headers={"X-Spendtrail-Budget": budget.state,
                                              **budget.headers})
        request[_ADMITTED] = event_id
        request_id, attempt = self.linker.link(
            key_id=key.id,
            idempotency_key=request.headers.get(IDEMPOTENCY_HEADER),
            retry_count=retry_count(request.headers.get(RETRY_HEADER)),
            method=request.method,
            path=request.raw_path,
            body=body,
            event_id=event_id,
        )
        call = Call(event_id, request_id, attempt, started, path[:200], key, identity, model,
                    route)
        ours = {
            "X-Spendtrail-Request-Id": request_id,
            "X-Spendtrail-Event-Id": event_id,
            "X-Spendtrail-Allocation": identity.status,
            "X-Spendtrail-Budget": budget.state,
        }

        streaming = bool(payload) and payload.get("stream") is True
        strip_usage = False
        if streaming and path in INCLUDE_USAGE:
            options = payload.get("stream_options")
            if not (isinstance(options, dict) and options.get("include_usage") is True):
                # Ask for exact usage; the extra chunk is dropped before the client sees it.
                payload["stream_options"] = {**(options if isinstance(options, dict) else {}),
                                             "include_usage": True}
                body = _encode.encode(payload)
                strip_usage = True

        self._intend(call)
        sent = time.monotonic()
        try:
            upstream = await self.client.request(
                request.method,
                route.url,
                request.raw_path[3:],  # raw_path starts with /v1
                self._upstream_headers(request, route),
                body or None,
            )
        except TimeoutError:
            return self._failed(call, ours, 504, "upstream_timeout",
                                "the provider did not answer in time")
        except Unreachable:
            return self._failed(call, ours, 502, "upstream_unreachable",
                                "cannot connect to the provider")
        except UpstreamError as exc:
            return self._failed(call, ours, 502, *_failure(exc, "connection to the provider "
                                                            "failed"))
        self.metrics.observe_latency(time.monotonic() - sent)
        found_id = provider_request_id(upstream.headers)
        call.provider_request_id = found_id and found_id.replace(route.key, PLACEHOLDER)
        if streaming and call.provider_request_id and not upstream.complete:
            # A stream may be in flight for long; one that has all arrived is journaled
            # before the gateway next waits for anything.
            self._intend(call)
        try:
            if not 100 <= upstream.status <= 599:
                return self._failed(call, ours, 502, "upstream_malformed_response",
                                    f"the provider answered with HTTP status {upstream.status}")
            content_type = upstream.headers.get("Content-Type", "")
            if streaming and upstream.status == 200 and content_type.startswith(
                "text/event-stream"
            ):
                return await self._stream(request, upstream, call, ours, strip_usage)
            if path not in METERED and upstream.status < 400:
                return await self._relay(request, upstream, call, ours)
            return await self._complete(upstream, call, ours)
        except Exception:  # the provider answered, so whatever failed here, the call is billed
            log.exception("event %s: the gateway failed after the provider answered",
                          call.event_id)
            return self._failed(call, ours, 500, "gateway_error",
                                "the gateway failed to relay the provider's response")
        finally:
            upstream.release()

    # -- authentication and refusals -----------------------------------------------------

    def _authenticate(
        self, headers: Any, snapshot: Snapshot, now: datetime
    ) -> GatewayKey | Refusal:
        # The openai SDKs send the key as a bearer token, the anthropic SDKs as x-api-key.
        header = headers.get("Authorization")
        scheme, _, presented = (header or "").partition(" ")
        if header is None and (api_key := headers.get("x-api-key")):
            scheme, presented = "bearer", api_key
        if scheme.lower() != "bearer" or not presented.strip():
            return Refusal(401, "missing gateway key: send 'Authorization: Bearer sk-st-...' "
                           "(or 'x-api-key: sk-st-...') with a key from `spendtrail keys "
                           "create`", "missing_api_key", None)
        key = snapshot.keys.find(presented.strip())
        if key is None:  # never echo what was sent: it may be someone's provider key
            return Refusal(401, "invalid gateway key", "invalid_api_key", None)
        if not key.active(now):
            return Refusal(401, f"gateway key {key.key_prefix}... was revoked",
                           "revoked_api_key", None)
        return key

    def _refuse(self, refusal: Refusal) -> web.Response:
        self.metrics.rejected[refusal.code] += 1
        return error_response(refusal.status, refusal.message, refusal.code, refusal.param)

    # -- complete responses --------------------------------------------------------------

    async def _complete(
        self, upstream: UpstreamResponse, call: Call, ours: dict[str, str]
    ) -> web.Response:
        try:
            data = await _read_limited(upstream, self.config.max_response_bytes)
        except _TooLarge:
            return self._failed(call, ours, 502, "upstream_response_too_large",
                                f"the provider's response exceeds "
                                f"{self.config.max_response_bytes} bytes")
        except TimeoutError:
            return self._failed(call, ours, 504, "upstream_timeout",
                                "the provider stopped sending its response")
        except UpstreamError as exc:
            return self._failed(call, ours, 502, *_failure(exc, "the provider's response was "
                                                            "cut off"))
        status = upstream.status
        facts = ResponseFacts()
        if status >= 400:
            data = self._clean_error(status, data, call.upstream.secret)
        else:
            data = mask(data, call.upstream.secret)
        if status < 400 and call.endpoint in METERED:
            document = json_object(data)
            if document is None:
                return self._failed(call, ours, 502, "upstream_malformed_response",
                                    "the provider's response is not a JSON object")
            facts = facts_from_body(call.endpoint, document)
        cost = self._record(call, status, outcome_for_status(status), facts)
        headers = self._downstream_headers(upstream.headers, call.upstream.key)
        headers.update(ours)
        headers["X-Spendtrail-Cost"] = cost
        return web.Response(status=status, body=data, headers=headers)

    def _clean_error(self, status: int, data: bytes, secret: bytes) -> bytes:
        """The provider's error, redacted, in the OpenAI shape even when it sent text."""
        text = redact(mask(data, secret).decode("utf-8", "replace"))
        document = json_object(text.encode())
        if document is not None and isinstance(document.get("error"), dict | str):
            return text.encode()
        return error_body(status, f"the provider answered HTTP {status}: {text[:500]}",
                          "upstream_http_error")

    async def _relay(
        self,
        request: web.Request,
        upstream: UpstreamResponse,
        call: Call,
        ours: dict[str, str],
    ) -> web.StreamResponse:
        """An unmetered body (models, files, audio, ...) goes through as it arrives."""
        headers = self._downstream_headers(upstream.headers, call.upstream.key)
        headers.update(ours)
        headers["X-Spendtrail-Cost"] = "unmetered"
        response = web.StreamResponse(status=upstream.status, headers=headers)
        masked = StreamMask(call.upstream.secret)
        try:
            await _write(response.prepare(request))
            while data := await upstream.read_some():
                if data := masked.feed(data):
                    await _write(response.write(data))
            if rest := masked.flush():
                await _write(response.write(rest))
            self._record(call, upstream.status, outcome_for_status(upstream.status),
                         ResponseFacts())
            await _write(response.write_eof())
        except _ClientGone:
            self._record(call, 499, "cancelled", ResponseFacts())
        except (TimeoutError, UpstreamError) as exc:
            timeout = isinstance(exc, TimeoutError)
            self._record(call, 504 if timeout else 502, "timeout" if timeout else
                         "upstream_error", ResponseFacts())
            if request.transport is not None:  # a truncated body must not look complete
                request.transport.close()
        except asyncio.CancelledError:
            self._record(call, 499, "cancelled", ResponseFacts())
            raise
        except Exception:
            log.exception("event %s: the gateway failed relaying a body", call.event_id)
            self._record(call, 500, "gateway_error", ResponseFacts())
            if request.transport is not None:
                request.transport.close()
        return response

    # -- streams ---------------------------------------------------------------------------

    async def _stream(
        self,
        request: web.Request,
        upstream: UpstreamResponse,
        call: Call,
        ours: dict[str, str],
        strip_usage: bool,
    ) -> web.StreamResponse:
        headers = self._downstream_headers(upstream.headers, call.upstream.key)
        headers.update(ours)
        response = _Stream(status=200, headers=headers)
        tracker = SseTracker(strip_usage_chunk=strip_usage)
        try:
            await _write(response.prepare(request))
            data = upstream.read_nowait()  # what arrived with the headers
            if not data:  # the first event may be long coming: the client gets the headers now
                await _write(response.write(b""))
            out = b""
            while data or (data := await upstream.read_some()):
                out = self._forward(request, call, tracker, tracker.feed(data))
                data = b""
                if upstream.at_eof():  # the last piece goes out with the end of the stream
                    break
                if tracker.finished:  # the provider holds the connection open after its end
                    await self._send(response, call, out)
                    out = mask(await _drain(upstream), call.upstream.secret)
                    break
                await self._send(response, call, out)
                out = b""
            out += self._forward(request, call, tracker, tracker.flush())
            if tracker.overflowed:
                log.warning("event %s: a stream event exceeded %d bytes and was not parsed; "
                            "its usage may be missing", call.event_id, tracker.max_event_bytes)
            if not call.recorded:
                if tracker.facts.usage is not None:  # ended without [DONE], but complete
                    self._record(call, 200, "success", tracker.facts)
                else:
                    self._record(call, 502, "upstream_error", tracker.facts)
                    out += sse_error(502, "the provider's stream ended before it was complete",
                                     "upstream_stream_cut")
            await _write(response.write_eof(out))
        except _ClientGone:
            self._record(call, 499, "cancelled", tracker.facts)
        except TimeoutError:
            await self._abort(response, call, tracker, 504, "timeout", "upstream_timeout",
                              "the provider stopped sending the stream")
        except UpstreamError as exc:
            await self._abort(response, call, tracker, 502, "upstream_error",
                              "upstream_stream_cut",
                              f"the provider's stream was cut off ({type(exc).__name__})")
        except asyncio.CancelledError:
            self._record(call, 499, "cancelled", tracker.facts)
            raise
        except Exception:
            log.exception("event %s: the gateway failed relaying a stream", call.event_id)
            await self._abort(response, call, tracker, 500, "gateway_error", "gateway_error",
                              "the gateway failed while relaying the stream")
        return response

    def _forward(self, request: web.Request, call: Call, tracker: SseTracker, events) -> bytes:
        """The bytes of `events` for the client, masked; the call is journaled before its
        terminal event (unless the client is already gone: then it is cancelled)."""
        out: list[bytes] = []
        for event in events:
            if event.terminal and not call.recorded:
                if request.transport is None or request.transport.is_closing():
                    raise _ClientGone
                outcome: Outcome = "upstream_error" if tracker.failed else "success"
                cost = self._record(call, 502 if tracker.failed else 200, outcome, tracker.facts)
                # An SSE comment: clients skip it, people reading the stream see the cost.
                out.append(f": spendtrail-cost {cost}\n\n".encode())
            if event.forward:
                out.append(event.raw)
        # whole events, so a key cannot straddle two writes
        return mask(b"".join(out), call.upstream.secret) if out else b""

    async def _send(self, response: web.StreamResponse, call: Call, out: bytes) -> None:
        if out:
            await _write(response.write(out))
            call.delivered = call.recorded  # the terminal event, if it was in `out`, is sent

    async def _abort(
        self, response, call: Call, tracker: SseTracker, status: int, outcome: Outcome,
        code: str, message: str,
    ) -> None:
        told = call.delivered  # after the terminal event the client has all it needs
        self._record(call, status, outcome, tracker.facts)
        try:
            if not told:
                await _write(response.write(sse_error(status, message, code)))
            await _write(response.write_eof())
        except Exception:  # the client is gone, or nothing more can be written: done either way
            pass

    # -- recording -------------------------------------------------------------------------

    def _failed(
        self, call: Call, ours: dict[str, str], status: int, code: str, message: str
    ) -> web.Response:
        """A transport failure (or the gateway's own, 500): recorded, and answered in the
        OpenAI error shape."""
        log.warning("%s %s: %s (event %s)", status, call.endpoint, code, call.event_id)
        outcome: Outcome = {504: "timeout", 500: "gateway_error"}.get(status, "upstream_error")
        cost = self._record(call, status, outcome, ResponseFacts())
        return error_response(status, message, code, headers={**ours, "X-Spendtrail-Cost": cost})

    def _intend(self, call: Call) -> None:
        """Journal the attempt before it goes upstream, so a crash mid-flight still leaves
        an event: its completion is the event `_record` writes (docs/gateway.md)."""
        try:
            self.spool.append_intent(UsageEvent(
                event_id=call.event_id, request_id=call.request_id, attempt=call.attempt,
                started_at=call.started_at, provider=call.upstream.provider,
                endpoint=call.endpoint, model_requested=call.model_requested,
                outcome="interrupted", context=call.identity.context,
                provider_request_id=call.provider_request_id, gateway_key_id=call.key.id,
                source="gateway"))
        except (OSError, ValueError):
            self.metrics.journal_errors += 1
            log.exception("could not journal the intent of event %s", call.event_id)

    def _record(self, call: Call, status: int, outcome: Outcome, facts: ResponseFacts) -> str:
        """Append the attempt's event to the journal, once; returns the cost header value.
        Never raises: the provider has answered, so the call must not go unrecorded."""
        if call.recorded:
            return call.cost
        call.recorded = True
        self.linker.settle(call.request_id, status)
        usage = facts.usage or Usage()
        event = UsageEvent(
            event_id=call.event_id,
            request_id=call.request_id,
            attempt=call.attempt,
            started_at=call.started_at,
            ended_at=max(datetime.now(UTC), call.started_at),  # the wall clock may step back
            provider=call.upstream.provider,
            endpoint=call.endpoint,
            model_requested=call.model_requested,
            model_served=facts.model,
            http_status=status,
            outcome=outcome,
            context=call.identity.context,
            usage=usage,
            raw_usage=facts.raw_usage,
            service_tier=facts.service_tier,
            provider_request_id=call.provider_request_id,
            response_id=facts.response_id,
            gateway_key_id=call.key.id,
            source="gateway",
        )
        self._journal(event)
        call.cost = "unpriced"
        try:
            cost, call.cost = self._price(event)
            self._count(event, cost, call.identity.status == "quarantined")
            self.config.budget.record(call.identity.budgeted, event, cost)
        except Exception:  # the event is journaled: the answer must still reach the client
            log.exception("event %s: pricing or budget settlement failed", event.event_id)
        return call.cost

    def _journal(self, event: UsageEvent) -> None:
        try:
            try:
                self.spool.append(event)
            except (TypeError, ValueError):
                # A text JSON cannot hold (a lone surrogate, from a provider's header or
                # body): keep the event with such characters replaced rather than lose it.
                log.warning("event %s: replaced characters that cannot be journaled",
                            event.event_id)
                self.spool.append(_scrubbed(event))
        except OSError:
            self.metrics.journal_errors += 1
            log.exception("could not journal event %s", event.event_id)

    def _price(self, event: UsageEvent) -> tuple[CostBreakdown | None, str]:
        if not any(msgspec.structs.astuple(event.usage)):
            return None, "unmetered"
        model = event.model
        tier = event.service_tier
        entry = self.snapshot.catalog.lookup(event.provider, model, event.started_at, tier) if (
            model) else None
        if entry is None:
            return None, "unpriced"
        cost = price_usage(event.usage, entry, service_tier=tier)
        text = f"{format(from_pico(cost.total_pico).normalize(), 'f')} {cost.currency}"
        return cost, text + " incomplete" if cost.status == INCOMPLETE else text

    def _count(self, event: UsageEvent, cost: CostBreakdown | None, quarantined: bool) -> None:
        metrics = self.metrics
        label = event.endpoint if event.endpoint in KNOWN else "other"
        metrics.attempts[label, event.outcome] += 1
        if event.attempt > 1:
            metrics.retries += 1
        if quarantined:
            metrics.quarantined += 1
        usage = event.usage
        for meter in ("input_tokens", "cached_input_tokens", "output_tokens",
                      "reasoning_tokens", "images"):
            value = getattr(usage, meter)
            if value:
                metrics.tokens[meter] += value
        if cost is not None:
            metrics.cost_pico[cost.currency] += cost.total_pico
        if (cost is None or cost.status == INCOMPLETE) and any(
            msgspec.structs.astuple(usage)
        ):
            metrics.unpriced += 1

    # -- headers -------------------------------------------------------------------------------

    def _upstream_headers(self, request: web.Request, route: Upstream) -> CIMultiDict[str]:
        headers: CIMultiDict[str] = CIMultiDict()
        for name, value in request.headers.items():
            lower = name.lower()
            if lower in _NOT_UPSTREAM or lower.startswith(CONTEXT_PREFIX):
                continue
            headers.add(name, value)
        if route.api == "anthropic":
            headers["x-api-key"] = route.key
        else:
            headers["Authorization"] = f"Bearer {route.key}"
        return headers

    def _downstream_headers(self, upstream: Any, secret: str) -> CIMultiDict[str]:
        """The provider's response headers for the client: hop-by-hop ones dropped, the
        provider key masked, and values that cannot be sent back as they came dropped."""
        headers: CIMultiDict[str] = CIMultiDict()
        for name, value in upstream.items():
            if name.lower() in _NOT_DOWNSTREAM:
                continue
            if not value.isascii():
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:
                    continue
            headers.add(name, value.replace(secret, PLACEHOLDER) if secret in value else value)
        return headers


def _scrubbed(event: UsageEvent) -> UsageEvent:
    return msgspec.convert(_scrub(msgspec.to_builtins(event)), UsageEvent)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, dict):
        return {_scrub(k): _scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(item) for item in value]
    return value

def _model_of(request: web.Request, body: bytes) -> str | None:
    """The model an unmetered JSON call names (``/v1/messages/count_tokens``), for its route."""
    if request.content_type != "application/json":
        return None
    document = json_object(body)
    return _label(document.get("model")) if document else None


def _label(value: Any) -> str | None:
    return value[:200] if isinstance(value, str) and value else None


class _TooLarge(Exception):
    pass


def _failure(exc: UpstreamError, cut: str) -> tuple[str, str]:
    """The error code and message of a provider's failure: an answer that is not HTTP, or
    a connection that failed (`cut` says when)."""
    if isinstance(exc, Malformed):
        return "upstream_malformed_response", f"the provider's answer is malformed: {exc}"
    return "upstream_connection_failed", f"{cut} ({type(exc).__name__})"


async def _read_limited(response: UpstreamResponse, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    while chunk := await response.read_some():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        parts.append(chunk)
    return b"".join(parts)


async def _drain(upstream: UpstreamResponse) -> bytes:
    """What follows a stream's terminal event (normally nothing): read to the end so the
    connection can be reused, but never wait long for a provider that keeps it open."""
    try:
        return await asyncio.wait_for(upstream.read(), _DRAIN_SECONDS)
    except (TimeoutError, UpstreamError):
        return b""


async def _write(awaitable: Any) -> Any:
    """Await a write to the client: a client gone (ConnectionError) is not the provider's
    failure."""
    try:
        return await awaitable
    except ConnectionError as exc:
        raise _ClientGone from exc
