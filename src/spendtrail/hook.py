"""In-process capture: ``instrument(client, ...)`` journals every HTTP attempt an ``openai``
or ``anthropic`` client makes as one UsageEvent (``source: "hook"``), without a gateway. See
docs/hook.md.

Both SDKs (openai 3.x, anthropic 2.x, generated alike) send every request through the
``httpx2`` client they keep at ``client._client``, which hands it to ``_transport`` (or to a
proxy transport in ``_mounts``).
Those private attributes are what we wrap: a transport that forwards each request unchanged
(apart from ``stream_options.include_usage``, as the gateway does) and observes the response
bytes as the SDK reads them. The events are the gateway's, built from the same parsers
(``events.usage``) and the same retry linking (``events.linking``).
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import httpx2
import msgspec
from httpx2._decoders import MultiDecoder

from spendtrail.errors import SpendtrailError
from spendtrail.events.ids import new_event_id
from spendtrail.events.linking import IDEMPOTENCY_HEADER, RETRY_HEADER, RetryLinker, retry_count
from spendtrail.events.model import (
    AllocationContext,
    Outcome,
    Usage,
    UsageEvent,
    outcome_for_status,
)
from spendtrail.events.usage import (
    INCLUDE_USAGE,
    METERED,
    ResponseFacts,
    SseEvent,
    SseTracker,
    facts_from_body,
    json_object,
    provider_request_id,
)
from spendtrail.journal.spool import Spool
from spendtrail.settings import Settings

__all__ = ["HookError", "instrument", "provider_for"]

log = logging.getLogger("spendtrail.hook")

# The SDK puts its per-call idempotency key (the same on every retry of one call) in this
# header once we name it; the transport takes it out again, so the provider never sees it.
CALL_KEY_HEADER = "X-Spendtrail-Call-Key"
ROTATE_SECONDS = 30.0  # how long a hook-opened spool file stays open, as the gateway's
MAX_BODY_BYTES = 64 * 1024 * 1024  # larger JSON bodies are passed on but not metered

_PROVIDERS = {"cometapi.com": "cometapi", "openai.com": "openai", "anthropic.com": "anthropic"}
_encode = msgspec.json.Encoder()
ClientT = TypeVar("ClientT")


class HookError(SpendtrailError):
    """instrument() cannot be applied to this client or with these arguments."""


def instrument(
    client: ClientT,
    *,
    application: str,
    environment: str | None = None,
    workload_class: str | None = None,
    job_id: str | None = None,
    tags: Mapping[str, str] | None = None,
    provider: str | None = None,
    spool: Spool | Path | None = None,
) -> ClientT:
    """Record every HTTP attempt of an ``openai.OpenAI``/``AsyncOpenAI`` or
    ``anthropic.Anthropic``/``AsyncAnthropic`` client; returns the same client, instrumented
    in place. Clients derived with ``with_options`` share its HTTP client and so are recorded
    too."""
    http = getattr(client, "_client", None)
    if isinstance(http, httpx2.Client):
        wrap: type[_SyncTransport] | type[_AsyncTransport] = _SyncTransport
    elif isinstance(http, httpx2.AsyncClient):
        wrap = _AsyncTransport
    else:
        raise HookError(
            f"instrument() expects an openai.OpenAI, AsyncOpenAI, anthropic.Anthropic or "
            f"AsyncAnthropic client using httpx2, "
            f"got {type(client).__name__} with an HTTP client of type {type(http).__name__}")
    if isinstance(http._transport, _SyncTransport | _AsyncTransport):
        raise HookError("this client (or the HTTP client it shares) is already instrumented")

    base_url = httpx2.URL(str(client.base_url))
    base_path = base_url.path
    if type(client).__module__.split(".")[0] == "anthropic":
        # Anthropic's base URL is the host; its paths carry /v1 themselves (/v1/messages).
        base_path = base_path.rstrip("/") + "/v1/"
    provider = _checked_label(provider or provider_for(base_url.host), "provider")
    context = _checked_context(AllocationContext(
        application=application, environment=environment, workload_class=workload_class,
        job_id=job_id, tags=dict(tags or {})))
    recorder = _Recorder(
        spool=spool if isinstance(spool, Spool) else _shared_spool(spool or Settings().spool),
        provider=provider, context=context, base_path=base_path)
    if getattr(client, "_idempotency_header", "") is None:
        client._idempotency_header = CALL_KEY_HEADER
    http._transport = wrap(http._transport, recorder)
    http._mounts = {pattern: None if transport is None else wrap(transport, recorder)
                    for pattern, transport in http._mounts.items()}
    return client


def provider_for(host: str) -> str:
    """The provider name for events sent to ``host``: known providers by their domain."""
    host = host.lower().rstrip(".")
    for domain, name in _PROVIDERS.items():
        if host == domain or host.endswith("." + domain):
            return name
    return "openai-compatible"


def _checked_context(context: AllocationContext) -> AllocationContext:
    # Constructors do not check constraints; an invalid label found only at ingest would
    # lose every event of the job, so fail now.
    try:
        return msgspec.json.decode(msgspec.json.encode(context), type=AllocationContext)
    except msgspec.ValidationError as exc:
        raise HookError(f"instrument(): invalid allocation context: {exc}") from None


def _checked_label(value: str, name: str) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= 200:
        raise HookError(f"instrument(): {name} must be a string of 1 to 200 characters")
    return value


# -- the journal -----------------------------------------------------------------------------

_spools: dict[Path, Spool] = {}
_spools_lock = threading.Lock()


def _shared_spool(directory: Path) -> Spool:
    """One spool per directory for the whole process, sealed when idle and at exit, so a
    batch job's last events reach the ledger without anyone closing it."""
    directory = Path(directory).expanduser().resolve()
    with _spools_lock:
        spool = _spools.get(directory)
        if spool is None:
            spool = _spools[directory] = Spool(directory, max_age=ROTATE_SECONDS)
            atexit.register(spool.close)
            threading.Thread(target=_seal_when_idle, args=(spool,), daemon=True,
                             name="spendtrail-hook-spool").start()
    return spool


def _seal_when_idle(spool: Spool) -> None:
    while True:
        time.sleep(ROTATE_SECONDS)
        spool.seal_if_idle()


# -- one attempt ------------------------------------------------------------------------------


@dataclass(slots=True)
class _Attempt:
    event_id: str
    request_id: str
    attempt: int
    started_at: datetime
    endpoint: str
    model_requested: str | None
    streaming: bool
    strip_usage: bool
    provider_request_id: str | None = None
    recorded: bool = False


class _Recorder:
    """Turns requests into attempts and attempts into journaled events, once each."""

    def __init__(
        self, *, spool: Spool, provider: str, context: AllocationContext, base_path: str
    ) -> None:
        self.spool = spool
        self.provider = provider
        self.context = context
        self.base_path = base_path if base_path.endswith("/") else base_path + "/"
        # Idempotency keys are scoped to the owner, as the gateway scopes them to its key.
        self.scope = f"hook:{context.application}"
        self.linker = RetryLinker()
        self._lock = threading.Lock()

    def begin(self, request: httpx2.Request) -> tuple[_Attempt, httpx2.Request]:
        """The attempt a request starts, and the request to send for it."""
        started = datetime.now(UTC)
        call_key = request.headers.get(CALL_KEY_HEADER)
        if call_key is not None:
            del request.headers[CALL_KEY_HEADER]
        endpoint = self._endpoint(request.url.path)
        # Only a body already in memory is read: an upload stream is left alone.
        body = request.content if isinstance(request.stream, httpx2.ByteStream) else b""
        payload = json_object(body) if endpoint in METERED else None
        streaming = payload is not None and payload.get("stream") is True
        strip_usage = False
        send = request
        if streaming and endpoint in INCLUDE_USAGE:
            options = payload.get("stream_options")
            if not (isinstance(options, dict) and options.get("include_usage") is True):
                # Ask for exact usage; the extra chunk is removed before the SDK reads it.
                payload["stream_options"] = {**(options if isinstance(options, dict) else {}),
                                             "include_usage": True}
                send = _with_body(request, _encode.encode(payload))
                strip_usage = True

        event_id = new_event_id()
        with self._lock:
            request_id, attempt = self.linker.link(
                key_id=self.scope,
                idempotency_key=request.headers.get(IDEMPOTENCY_HEADER) or call_key,
                retry_count=retry_count(request.headers.get(RETRY_HEADER)),
                method=request.method,
                path=request.url.raw_path.decode("ascii", "replace"),
                body=body,
                event_id=event_id,
            )
        model = payload.get("model") if payload else None
        return _Attempt(
            event_id, request_id, attempt, started, endpoint,
            model[:200] if isinstance(model, str) and model else None, streaming, strip_usage,
        ), send

    def _endpoint(self, path: str) -> str:
        """The path as the gateway names it, ``/v1/...``, whatever the base URL's prefix."""
        if path.startswith(self.base_path):
            path = "/v1/" + path[len(self.base_path):]
        return path[:200]

    @contextmanager
    def sending(self, attempt: _Attempt) -> Iterator[None]:
        """Around sending the request: if no response comes, the attempt is recorded."""
        try:
            yield
        except BaseException as exc:
            self.failed(attempt, exc)
            raise

    def failed(self, attempt: _Attempt, exc: BaseException) -> None:
        """No response: a transport error has no status."""
        if isinstance(exc, httpx2.TimeoutException):
            self.record(attempt, None, "timeout", ResponseFacts())
        elif isinstance(exc, Exception):
            self.record(attempt, None, "upstream_error", ResponseFacts())
        else:  # cancelled (task cancellation, KeyboardInterrupt) while waiting
            self.record(attempt, 499, "cancelled", ResponseFacts())

    def record(
        self, attempt: _Attempt, status: int | None, outcome: Outcome, facts: ResponseFacts
    ) -> None:
        with self._lock:
            if attempt.recorded:
                return
            attempt.recorded = True
            self.linker.settle(attempt.request_id, status)
        event = UsageEvent(
            event_id=attempt.event_id,
            request_id=attempt.request_id,
            attempt=attempt.attempt,
            started_at=attempt.started_at,
            ended_at=datetime.now(UTC),
            provider=self.provider,
            endpoint=attempt.endpoint,
            model_requested=attempt.model_requested,
            model_served=facts.model,
            http_status=status,
            outcome=outcome,
            context=self.context,
            usage=facts.usage or Usage(),
            raw_usage=facts.raw_usage,
            service_tier=facts.service_tier,
            provider_request_id=attempt.provider_request_id,
            response_id=facts.response_id,
            source="hook",
        )
        try:
            self.spool.append(event)
        except OSError:  # the caller's call must not fail because the disk is full
            log.exception("could not journal event %s", event.event_id)


def _with_body(request: httpx2.Request, body: bytes) -> httpx2.Request:
    """The same request with another JSON body: same headers, in order, new length."""
    headers = [(name, str(len(body)).encode() if name.lower() == b"content-length" else value)
               for name, value in request.headers.raw]
    return httpx2.Request(request.method, request.url, headers=headers, content=body,
                          extensions=request.extensions)


# -- observing a response ---------------------------------------------------------------------


class _Observer:
    """Reads a response's bytes on their way to the SDK and records the attempt: at the
    stream's terminal event, at the end of the body, or when it fails or is closed."""

    def __init__(self, recorder: _Recorder, attempt: _Attempt, response: httpx2.Response):
        self.recorder = recorder
        self.attempt = attempt
        self.status = response.status_code
        attempt.provider_request_id = provider_request_id(response.headers)
        encodings = response.headers.get_list("content-encoding", split_commas=True)
        encodings = [e.strip().lower() for e in encodings if e.strip().lower() != "identity"]
        self.decoder = MultiDecoder(encodings) if encodings else None
        content_type = response.headers.get("content-type", "")
        self.tracker: SseTracker | None = None
        self.parts: list[bytes] | None = None
        self.size = 0
        if (attempt.streaming and self.status == 200
                and content_type.startswith("text/event-stream")):
            self.tracker = SseTracker(strip_usage_chunk=attempt.strip_usage)
            if attempt.strip_usage:
                # We hand on the events we keep, decoded, so the length and encoding the
                # provider sent no longer describe the body.
                for name in ("content-encoding", "content-length"):
                    response.headers.pop(name, None)
        elif 200 <= self.status < 300 and attempt.endpoint in METERED:
            self.parts = []

    def feed(self, raw: bytes) -> bytes:
        """Observe one piece of the body; returns what the SDK gets instead."""
        data = b"".join(self.decoder.decode(raw)) if self.decoder is not None else raw
        if self.tracker is not None:
            kept = self._forward(self.tracker.feed(data))
            return kept if self.attempt.strip_usage else raw
        if self.parts is not None:
            self._keep(data)
        return raw

    def _keep(self, data: bytes) -> None:
        self.size += len(data)
        if self.size <= MAX_BODY_BYTES:
            self.parts.append(data)

    def end(self) -> bytes:
        """The body is complete; returns anything still held back."""
        data = b"".join(self.decoder.flush()) if self.decoder is not None else b""
        if self.tracker is not None:
            kept = self._forward([*self.tracker.feed(data), *self.tracker.flush()])
            if self.tracker.overflowed:
                log.warning("event %s: a stream event exceeded %d bytes and was not parsed; "
                            "its usage may be missing", self.attempt.event_id,
                            self.tracker.max_event_bytes)
            if self.tracker.facts.usage is not None:  # ended without [DONE], but complete
                self._record(200, "success", self.tracker.facts)
            else:  # cut short by the provider; what it sent is all the SDK gets, too
                self._record(502, "upstream_error", self.tracker.facts)
            return kept if self.attempt.strip_usage else b""
        if self.parts is not None:
            self._keep(data)
            if self.size > MAX_BODY_BYTES:
                log.warning("event %s: a body over %d bytes was not metered",
                            self.attempt.event_id, MAX_BODY_BYTES)
                self._record(self.status, "success", ResponseFacts())
                return b""
            document = json_object(b"".join(self.parts))
            if document is None:  # the SDK fails to parse it too
                self._record(502, "upstream_error", ResponseFacts())
            else:
                self._record(self.status, "success",
                             facts_from_body(self.attempt.endpoint, document))
            return b""
        self._record(self.status, outcome_for_status(self.status), ResponseFacts())
        return b""

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Around reading the body: a failure, or the reader stopping, is recorded."""
        try:
            yield
        except BaseException as exc:
            self.failed(exc)
            raise

    def failed(self, exc: BaseException) -> None:
        """Reading the body failed, or the reader stopped: statuses as the gateway's."""
        facts = self.tracker.facts if self.tracker is not None else ResponseFacts()
        if isinstance(exc, httpx2.TimeoutException):
            self._record(504, "timeout", facts)
        elif isinstance(exc, Exception):
            self._record(502, "upstream_error", facts)
        else:
            self.closed()

    def closed(self) -> None:
        """Closed before its end: abandoned by the caller (an error response the SDK
        discards to retry keeps its own status)."""
        if self.status >= 400:
            self._record(self.status, outcome_for_status(self.status), ResponseFacts())
        else:
            facts = self.tracker.facts if self.tracker is not None else ResponseFacts()
            self._record(499, "cancelled", facts)

    def _forward(self, events: list[SseEvent]) -> bytes:
        kept: list[bytes] = []
        for event in events:
            if event.terminal:
                failed = self.tracker.failed
                self._record(502 if failed else 200, "upstream_error" if failed else "success",
                             self.tracker.facts)
            if event.forward:
                kept.append(event.raw)
        return b"".join(kept)

    def _record(self, status: int | None, outcome: Outcome, facts: ResponseFacts) -> None:
        self.recorder.record(self.attempt, status, outcome, facts)


# -- the sync and async shells: they only move bytes; what is recorded, and when, is decided
# by the core they share (_Recorder.begin/sending, _Observer.feed/end/reading/closed).


class _SyncBody(httpx2.SyncByteStream):
    def __init__(self, inner: httpx2.SyncByteStream, observer: _Observer) -> None:
        self._inner = inner
        self._observer = observer

    def __iter__(self) -> Iterator[bytes]:
        with self._observer.reading():
            for raw in self._inner:
                if data := self._observer.feed(raw):
                    yield data
            tail = self._observer.end()
        if tail:
            yield tail

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            self._observer.closed()


class _AsyncBody(httpx2.AsyncByteStream):
    def __init__(self, inner: httpx2.AsyncByteStream, observer: _Observer) -> None:
        self._inner = inner
        self._observer = observer

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with self._observer.reading():
            async for raw in self._inner:
                if data := self._observer.feed(raw):
                    yield data
            tail = self._observer.end()
        if tail:
            yield tail

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            self._observer.closed()


# -- the transports ---------------------------------------------------------------------------


class _SyncTransport(httpx2.BaseTransport):
    def __init__(self, inner: httpx2.BaseTransport, recorder: _Recorder) -> None:
        self.inner = inner
        self.recorder = recorder

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        attempt, send = self.recorder.begin(request)
        with self.recorder.sending(attempt):
            response = self.inner.handle_request(send)
        response.stream = _SyncBody(response.stream, _Observer(self.recorder, attempt, response))
        return response

    def close(self) -> None:
        self.inner.close()


class _AsyncTransport(httpx2.AsyncBaseTransport):
    def __init__(self, inner: httpx2.AsyncBaseTransport, recorder: _Recorder) -> None:
        self.inner = inner
        self.recorder = recorder

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        attempt, send = self.recorder.begin(request)
        with self.recorder.sending(attempt):
            response = await self.inner.handle_async_request(send)
        response.stream = _AsyncBody(response.stream, _Observer(self.recorder, attempt, response))
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()
