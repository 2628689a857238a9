"""OpenTelemetry GenAI spans as usage events (docs/integrations.md#opentelemetry).

An OTLP/HTTP ``/v1/traces`` request (protobuf or JSON encoding) is decoded to its spans; a
span that records a model call under the GenAI semantic conventions (a provider in
``gen_ai.provider.name`` or the older ``gen_ai.system``, and an operation that calls a model)
becomes an event with ``source = "otel"``. Its event id is derived from the trace and span
ids, so a re-sent export adds nothing. Other spans are ignored and counted; a GenAI span
that cannot be an event (negative tokens, more cached than input...) is reported by its ids
and the rest of the request goes on.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from spendtrail.errors import SpendtrailError
from spendtrail.events import AllocationContext, EventError, Usage, UsageEvent, derived_event_id
from spendtrail.events.model import OWNER_FIELDS, outcome_for_status, service_tier_of
from spendtrail.integrations.owners import OwnerMap

# gen_ai.operation.name values that are one call to a model (absent: taken as one); agent
# and tool spans are not: an agent span's usage sums model calls that are spans of their own.
MODEL_OPERATIONS = {
    "chat": "/v1/chat/completions",
    "text_completion": "/v1/completions",
    "embeddings": "/v1/embeddings",
    "generate_content": "generate_content",
}
# Cache reads and writes: the current convention's names, then OpenLLMetry's.
CACHE_READ = ("gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_read_input_tokens")
CACHE_WRITE = (
    "gen_ai.usage.cache_creation.input_tokens",
    "gen_ai.usage.cache_creation_input_tokens",
)
ENVIRONMENT = ("deployment.environment.name", "deployment.environment")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_IDS = ("traceId", "spanId", "parentSpanId")


class OtlpError(SpendtrailError):
    """A request body that is not an OTLP trace export."""


@dataclass
class SpanReport:
    events: list[UsageEvent] = field(default_factory=list)
    ignored: int = 0  # spans that are not model calls
    bad: list[str] = field(default_factory=list)  # "trace/span: problem", one per bad span


def decode_request(body: bytes, content_type: str) -> ExportTraceServiceRequest:
    """The export in either OTLP/HTTP encoding: ``application/x-protobuf`` or
    ``application/json`` (whose trace and span ids are hex, not base64)."""
    request = ExportTraceServiceRequest()
    if content_type == "application/json":
        try:
            document = json.loads(body)
            _hex_ids_to_base64(document)
            json_format.ParseDict(document, request, ignore_unknown_fields=True)
        except (ValueError, json_format.ParseError, binascii.Error) as exc:
            raise OtlpError(f"not an OTLP JSON trace export: {exc}") from None
        return request
    try:
        request.ParseFromString(body)
    except DecodeError as exc:
        raise OtlpError(f"not an OTLP protobuf trace export: {exc}") from None
    return request


def _hex_ids_to_base64(document: Any) -> None:
    """OTLP/JSON writes ids as hex; protobuf's JSON mapping reads bytes as base64."""
    for resource_spans in document.get("resourceSpans", ()) if isinstance(document, dict) else ():
        for scope_spans in resource_spans.get("scopeSpans", ()):
            for span in scope_spans.get("spans", ()):
                for key in _IDS:
                    if span.get(key):
                        span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()


def spans_to_events(request: ExportTraceServiceRequest, owners: OwnerMap) -> SpanReport:
    report = SpanReport()
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        context = _context(resource, owners)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                span_attributes = attributes(span.attributes)
                if not is_model_call(span_attributes):
                    report.ignored += 1
                    continue
                try:
                    report.events.append(span_event(span, span_attributes, context))
                except (EventError, ValueError) as exc:
                    report.bad.append(f"{span.trace_id.hex()}/{span.span_id.hex()}: {exc}")
    return report


def attributes(items: Iterator[KeyValue]) -> dict[str, Any]:
    return {item.key: _value(item.value) for item in items}


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    if kind in (None, "kvlist_value", "bytes_value"):
        return None
    return getattr(value, kind)


def is_model_call(attrs: dict[str, Any]) -> bool:
    if not (attrs.get("gen_ai.provider.name") or attrs.get("gen_ai.system")):
        return False
    return attrs.get("gen_ai.operation.name", "chat") in MODEL_OPERATIONS


def span_event(span: Span, attrs: dict[str, Any], context: AllocationContext) -> UsageEvent:
    trace, span_id = span.trace_id.hex(), span.span_id.hex()
    if not trace.strip("0") or not span_id.strip("0"):
        raise ValueError("the span has no trace or span id")
    started = _time(span.start_time_unix_nano)
    input_tokens = _count(attrs, "gen_ai.usage.input_tokens")
    output_tokens = _count(attrs, "gen_ai.usage.output_tokens")
    status, outcome = None, "success"
    if span.status.code == Status.STATUS_CODE_ERROR:
        code = attrs.get("http.response.status_code")
        status = code if isinstance(code, int) and 100 <= code <= 599 else None
        outcome = outcome_for_status(status) if status else "upstream_error"
    operation = attrs.get("gen_ai.operation.name", "chat")
    return UsageEvent(
        event_id=derived_event_id(started, f"otel:{trace}:{span_id}"),
        request_id=f"{trace}-{span_id}",
        started_at=started,
        ended_at=_time(span.end_time_unix_nano) if span.end_time_unix_nano else None,
        provider=str(attrs.get("gen_ai.provider.name") or attrs["gen_ai.system"])[:200],
        endpoint=MODEL_OPERATIONS[operation],
        model_requested=_label(attrs.get("gen_ai.request.model")),
        model_served=_label(attrs.get("gen_ai.response.model")),
        http_status=status,
        outcome=outcome,
        context=context,
        usage=Usage(
            input_tokens=input_tokens,
            cached_input_tokens=_first_count(attrs, CACHE_READ),
            cache_write_tokens=_first_count(attrs, CACHE_WRITE),
            output_tokens=output_tokens,
            reasoning_tokens=_count(attrs, "gen_ai.usage.reasoning_tokens"),
            requests=1,
        ),
        service_tier=service_tier_of(
            attrs.get("gen_ai.openai.response.service_tier")
            or attrs.get("openai.response.service_tier")
        ),
        response_id=_label(attrs.get("gen_ai.response.id")),
        source="otel",
    )


def _context(resource: dict[str, Any], owners: OwnerMap) -> AllocationContext:
    """Owner fields: the defaults, then the service's mapping, then the resource's own
    ``spendtrail.*`` attributes; the environment also from ``deployment.environment``."""
    fields = dict(owners.defaults)
    service = resource.get("service.name")
    fields.update(owners.owner("services", service if isinstance(service, str) else None) or {})
    for name in ENVIRONMENT:
        if isinstance(resource.get(name), str) and resource[name].strip():
            fields["environment"] = resource[name].strip()
            break
    for name in OWNER_FIELDS:
        value = resource.get(f"spendtrail.{name}")
        if isinstance(value, str) and value.strip():
            fields[name] = value.strip()[:200]
    tags = {"otel.service": service[:200]} if isinstance(service, str) and service else {}
    return AllocationContext(**fields, tags=tags)


def _time(nanos: int) -> datetime:
    if not nanos:
        raise ValueError("the span has no start time")
    return _EPOCH + timedelta(microseconds=nanos // 1000)  # exact: no float on the way


def _count(attrs: dict[str, Any], name: str) -> int:
    value = attrs.get(name)
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name}: expected a non-negative whole number, got {value!r}")
    return value


def _first_count(attrs: dict[str, Any], names: tuple[str, ...]) -> int:
    return next((_count(attrs, name) for name in names if name in attrs), 0)


def _label(value: Any) -> str | None:
    return value.strip()[:200] or None if isinstance(value, str) else None
