"""Usage from provider responses and SSE streams, as ``Usage`` meters.

OpenAI's shapes map onto the meters (see ``events/model.py``): chat and legacy completions
and embeddings report ``prompt_tokens``/``completion_tokens`` with ``*_details``; the
Responses API and image models report ``input_tokens``/``output_tokens``. Images are counted
from the ``data`` list of the response. Cache writes come from ``cache_write_tokens`` (OpenAI)
or ``cached_creation_tokens`` (new-api gateways such as CometAPI) in the input details; their
one-hour part from Anthropic's ``cache_creation.ephemeral_1h_input_tokens`` or new-api's
``claude_cache_creation_1_h_tokens``. Anthropic's own usage object (uncached
``input_tokens`` beside ``cache_read_input_tokens`` and ``cache_creation_input_tokens``) is
converted to the same meters; its streams (``message_start`` with the input side,
``message_delta`` with cumulative counts, ``message_stop`` last) are merged the way the
anthropic SDK merges them. Server tool use (``server_tool_use``) has no meter: it stays in
``raw_usage``. The service tier is the response's ``service_tier`` (OpenAI)
or ``usage.service_tier`` (Anthropic). A provider whose parts exceed their whole (cached >
prompt) is clamped so the event stays valid; ``raw_usage`` keeps what it actually said.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import msgspec

from spendtrail.events.model import Usage, service_tier_of

# The endpoints whose calls are billed by usage: their bodies are parsed for meters.
METERED = frozenset({
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/responses",
    "/v1/images/generations",
    "/v1/messages",  # Anthropic's Messages API
})
# Endpoints whose streams report usage only when asked with stream_options.include_usage.
INCLUDE_USAGE = frozenset({"/v1/chat/completions", "/v1/completions"})

_decode = msgspec.json.Decoder()
_EVENT_END = re.compile(rb"\r?\n\r?\n")
# The `"usage": null` field include_usage adds to every chunk. A quote after `,` or `{` is
# outside any JSON string (inside one it would be escaped), so this never matches content.
# The pattern has no literal start, so the regex engine tries it at every byte: the compact
# form providers send goes first with bytes.replace, and the pattern runs only on what has a
# null usage left (_NULL_USAGE, which starts with a literal, tells).
_NULL_USAGE_FIELD = re.compile(rb',\s*"usage"\s*:\s*null\b|(?<=\{)\s*"usage"\s*:\s*null\s*,?')
_NULL_USAGE = re.compile(rb'"usage"\s*:\s*null')
_USAGE_OBJECT = re.compile(rb'"usage"\s*:\s*\{')
# Responses API and Anthropic Messages stream events after which nothing but the end of the
# stream follows.
_TERMINAL_TYPES = {"response.completed", "response.failed", "response.incomplete", "error",
                   "message_stop"}
_FAILED_TYPES = {"response.failed", "error"}


def _worth_reading(raw: bytes) -> bool:
    """Whether events (one or a run) may hold what a stream is read for, once its id is
    known: a usage object, its end, a terminal or error type. Substring scans (C speed):
    a run of content chunks, nearly all of a stream, then costs no per-event work."""
    return (b"[DONE]" in raw or b'"response.' in raw or b'"error"' in raw
            or b'"message_stop"' in raw
            or (b'"usage"' in raw and _USAGE_OBJECT.search(raw) is not None))


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _details(raw: dict[str, Any], *names: str) -> dict[str, Any]:
    for name in names:
        value = raw.get(name)
        if isinstance(value, dict):
            return value
    return {}


def _cache_writes(raw: dict[str, Any], reported: int) -> tuple[int, int]:
    """(all cache writes, the one-hour part): the reported total, else the sum of the TTLs."""
    ttls = _details(raw, "cache_creation")
    five = _count(ttls.get("ephemeral_5m_input_tokens")) or _count(
        raw.get("claude_cache_creation_5_m_tokens"))
    hour = _count(ttls.get("ephemeral_1h_input_tokens")) or _count(
        raw.get("claude_cache_creation_1_h_tokens"))
    writes = max(reported, five + hour)
    return writes, min(hour, writes)


def usage_from_raw(raw: dict[str, Any], *, images: int = 0) -> Usage:
    """Meters from one ``usage`` object: Anthropic's shape, or OpenAI's (any endpoint's)."""
    if "prompt_tokens" not in raw and (
            "cache_read_input_tokens" in raw or "cache_creation_input_tokens" in raw):
        return usage_from_anthropic(raw)
    return usage_from_openai(raw, images=images)


def usage_from_anthropic(raw: dict[str, Any]) -> Usage:
    """Meters from an Anthropic Messages ``usage``: its ``input_tokens`` are the uncached
    ones, so all input = input + cache reads + cache writes."""
    read = _count(raw.get("cache_read_input_tokens"))
    writes, hour = _cache_writes(raw, _count(raw.get("cache_creation_input_tokens")))
    output = _count(raw.get("output_tokens"))
    return Usage(
        input_tokens=_count(raw.get("input_tokens")) + read + writes,
        cached_input_tokens=read,
        cache_write_tokens=writes,
        cache_write_1h_tokens=hour,
        output_tokens=output,
        reasoning_tokens=min(
            _count(_details(raw, "output_tokens_details").get("thinking_tokens")), output),
        requests=1,
    )


def usage_from_openai(raw: dict[str, Any], *, images: int = 0) -> Usage:
    """Meters from one OpenAI-shaped ``usage`` object (any endpoint's)."""
    prompt = raw.get("prompt_tokens", raw.get("input_tokens"))
    completion = raw.get("completion_tokens", raw.get("output_tokens"))
    in_details = _details(raw, "prompt_tokens_details", "input_tokens_details")
    out_details = _details(raw, "completion_tokens_details", "output_tokens_details")
    input_tokens = _count(prompt)
    output_tokens = _count(completion)
    cached = min(_count(in_details.get("cached_tokens")), input_tokens)
    writes, hour = _cache_writes(raw, _count(in_details.get("cache_write_tokens")) or _count(
        in_details.get("cached_creation_tokens")))
    writes = min(writes, input_tokens - cached)
    return Usage(
        input_tokens=input_tokens,
        cached_input_tokens=cached,
        cache_write_tokens=writes,
        cache_write_1h_tokens=min(hour, writes),
        output_tokens=output_tokens,
        reasoning_tokens=min(_count(out_details.get("reasoning_tokens")), output_tokens),
        input_audio_tokens=min(_count(in_details.get("audio_tokens")), input_tokens),
        output_audio_tokens=min(_count(out_details.get("audio_tokens")), output_tokens),
        input_image_tokens=min(_count(in_details.get("image_tokens")), input_tokens),
        output_image_tokens=min(_count(out_details.get("image_tokens")), output_tokens),
        requests=1,
        images=images,
    )


@dataclass(slots=True)
class ResponseFacts:
    """What a call's response told us; ``usage`` is None when it reported none."""

    usage: Usage | None = None
    raw_usage: dict[str, Any] | None = None
    response_id: str | None = None
    model: str | None = None
    service_tier: str | None = None  # as events record it (``service_tier_of``)


def facts_from_body(endpoint: str, body: dict[str, Any]) -> ResponseFacts:
    """Usage, id and model of a complete (non-streamed) JSON response."""
    facts = ResponseFacts(response_id=_text(body.get("id")), model=_text(body.get("model")))
    raw = body.get("usage")
    if endpoint == "/v1/images/generations":
        data = body.get("data")
        images = len(data) if isinstance(data, list) else 0
        facts.raw_usage = raw if isinstance(raw, dict) else None
        facts.usage = usage_from_openai(facts.raw_usage or {}, images=images)
    elif isinstance(raw, dict):
        facts.raw_usage = raw
        facts.usage = usage_from_anthropic(raw) if endpoint == "/v1/messages" else (
            usage_from_raw(raw))
    facts.service_tier = _service_tier(body)
    return facts


def _service_tier(body: dict[str, Any]) -> str | None:
    """The tier a response says it was billed at: OpenAI's top-level ``service_tier``, or
    Anthropic's in ``usage``."""
    raw = body.get("usage")
    usage_tier = raw.get("service_tier") if isinstance(raw, dict) else None
    return service_tier_of(body.get("service_tier", usage_tier))


def _text(value: Any) -> str | None:
    return value[:200] if isinstance(value, str) and value else None


@dataclass(slots=True)
class SseEvent:
    raw: bytes  # the event as received, separator included (less what the tracker strips)
    forward: bool = True
    terminal: bool = False  # the stream's last event: journal the call before sending it


@dataclass
class SseTracker:
    """Splits an SSE byte stream into events and picks out usage, id and model.

    Only events that can carry what we need are decoded: the first (id, model), those with a
    ``usage`` object, and the terminal ones; a run of other events is passed on as one piece,
    unsplit. When ``strip_usage_chunk`` is set (we asked for usage, the
    caller did not), what ``stream_options.include_usage`` adds is taken out again: the
    usage-only chunk (``choices: []``) is marked not to be forwarded, and the
    ``"usage": null`` field of every other chunk is removed, so the caller sees the stream it
    would have seen without us.
    """

    strip_usage_chunk: bool = False
    max_event_bytes: int = 4 * 1024 * 1024
    facts: ResponseFacts = field(default_factory=ResponseFacts)
    finished: bool = False
    failed: bool = False  # the stream ended with an error event from the provider
    overflowed: bool = False
    _buffer: bytes = b""

    def feed(self, data: bytes) -> list[SseEvent]:
        # A separator (at most 4 bytes) may begin in the last 3 bytes already buffered; what
        # lies before them was searched already, so a long event is not rescanned per piece.
        position = max(0, len(self._buffer) - 3)
        buffer = self._buffer + data if self._buffer else data
        # The end of the last complete event: each separator, \r?\n\r?\n, ends in one of these.
        lf, crlf = buffer.rfind(b"\n\n", position), buffer.rfind(b"\n\r\n", position)
        end = max(lf + 2 if lf >= 0 else 0, crlf + 3 if crlf >= 0 else 0)
        block, self._buffer = buffer[:end], buffer[end:]
        events = self._events(self._strip(block)) if block else []
        if len(self._buffer) > self.max_event_bytes:
            # One event this large is not an OpenAI stream; pass it on without parsing.
            self.overflowed = True
            events.append(SseEvent(self._buffer))
            self._buffer = b""
        return events

    def flush(self) -> list[SseEvent]:
        """The last event when the stream ended without its blank line."""
        rest, self._buffer = self._buffer, b""
        return [self._event(self._strip(rest))] if rest.strip() else []

    def _strip(self, raw: bytes) -> bytes:
        # The pattern never crosses an event's end, so whole runs of events are stripped
        # in one pass.
        if not self.strip_usage_chunk or b'"usage"' not in raw:
            return raw
        raw = raw.replace(b',"usage":null', b"")
        return _NULL_USAGE_FIELD.sub(b"", raw) if _NULL_USAGE.search(raw) else raw

    def _events(self, block: bytes) -> list[SseEvent]:
        """Complete events: a run with nothing to read stays one piece, passed on as is."""
        if self._nothing_to_read(block):
            return [SseEvent(block)]
        events = []
        start = 0
        if b"\r" in block:
            while (match := _EVENT_END.search(block, start)) is not None:
                events.append(self._event(block[start : match.end()]))
                start = match.end()
        else:  # the same split, by a plain search (the pattern has no literal start)
            while (end := block.find(b"\n\n", start)) >= 0:
                events.append(self._event(block[start : end + 2]))
                start = end + 2
        if start < len(block):  # the odd line ending of a run of blank lines
            events.append(SseEvent(block[start:]))
        return events

    def _nothing_to_read(self, raw: bytes) -> bool:
        """Events after the end, or, once the id is known, ones that cannot hold usage or an
        end (``_worth_reading``)."""
        return self.finished or (self.facts.response_id is not None
                                 and not _worth_reading(raw))

    def _event(self, raw: bytes) -> SseEvent:
        event = SseEvent(raw)
        if self._nothing_to_read(raw):
            return event
        data = b"\n".join(
            line[5:].lstrip(b" ") for line in raw.splitlines() if line.startswith(b"data:")
        )
        if not data:
            return event
        if data == b"[DONE]":
            self.finished = event.terminal = True
            return event
        try:
            chunk = _decode.decode(data)
        except msgspec.DecodeError:
            return event
        if isinstance(chunk, dict):
            self._read(chunk, event)
        return event

    def _read(self, chunk: dict[str, Any], event: SseEvent) -> None:
        kind = chunk.get("type")
        if isinstance(chunk.get("response"), dict):  # the Responses API
            body = chunk["response"]
        elif kind == "message_start" and isinstance(chunk.get("message"), dict):  # Anthropic
            body = chunk["message"]
        else:
            body = chunk
        if self.facts.response_id is None:
            self.facts.response_id = _text(body.get("id"))
        if self.facts.model is None:
            self.facts.model = _text(body.get("model"))
        if "service_tier" in body:  # the last word counts: a stream may start with "auto"
            self.facts.service_tier = service_tier_of(body["service_tier"])
        raw = body.get("usage")
        if isinstance(raw, dict) and kind == "message_delta":
            # Anthropic: cumulative counts of what changed, over message_start's usage
            raw = {**(self.facts.raw_usage or {}),
                   **{name: value for name, value in raw.items() if value is not None}}
            self.facts.raw_usage = raw
            self.facts.usage = usage_from_anthropic(raw)
        elif isinstance(raw, dict):
            self.facts.raw_usage = raw
            self.facts.usage = usage_from_anthropic(raw) if kind == "message_start" else (
                usage_from_raw(raw))
            if self.strip_usage_chunk and chunk.get("choices") == []:
                event.forward = False
        if kind in _TERMINAL_TYPES or (kind is None and "error" in chunk):
            self.finished = event.terminal = True
            self.failed = kind in _FAILED_TYPES or kind is None


# The provider's own id for a call: CometAPI (new-api) sends X-Oneapi-Request-Id, OpenAI
# x-request-id, Anthropic request-id. Reconciliation matches the provider's log on it.
PROVIDER_ID_HEADERS = ("X-Oneapi-Request-Id", "x-request-id", "request-id")


def provider_request_id(headers: Any) -> str | None:
    """The provider's request id from response headers (any case-insensitive mapping)."""
    for name in PROVIDER_ID_HEADERS:
        value = headers.get(name)
        if value:
            return value[:200]
    return None


def json_object(data: bytes) -> dict[str, Any] | None:
    """A JSON object body, or None for anything else (empty, malformed, not an object)."""
    if not data:
        return None
    try:
        document = _decode.decode(data)
    except msgspec.DecodeError:
        return None
    return document if isinstance(document, dict) else None
