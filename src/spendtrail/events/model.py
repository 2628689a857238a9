"""UsageEvent: the one record shape every capture path produces and every layer reads.

Token meters follow the OpenAI convention, so one event is unambiguous whatever the source:
``input_tokens`` counts *all* prompt tokens, and ``cached_input_tokens`` (read from cache)
and ``cache_write_tokens`` (written to cache) are parts of it; ``output_tokens`` counts all
completion tokens and ``reasoning_tokens`` is the part of it spent on hidden reasoning.
``cache_write_1h_tokens`` is the part of ``cache_write_tokens`` written with a one-hour
lifetime (Anthropic bills it at its own rate; the rest are five-minute writes). Audio and
image token meters are likewise parts of input/output. ``input_characters`` counts the text
characters a text-to-speech call was billed for, apart from any tokens. Importers of sources
that count differently (Anthropic reports uncached input separately) convert before building
an event.

``service_tier`` is the processing tier the provider billed the call at (``batch``,
``flex``, ``priority``...); absent means the standard tier, which providers name
``default`` or ``standard``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec

from spendtrail.errors import SpendtrailError
from spendtrail.events.ids import new_event_id

# `interrupted`: the capture path recorded the attempt's intent and stopped (a crash) before
# its outcome was known; the provider may have billed it, its usage is unknown.
# `gateway_error`: the provider answered, then the gateway failed; the event is still written.
Outcome = Literal[
    "success", "client_error", "upstream_error", "timeout", "cancelled", "interrupted",
    "gateway_error",
]
INTERRUPTED = "interrupted"
OUTCOMES: tuple[str, ...] = Outcome.__args__  # type: ignore[attr-defined]

Count = Annotated[int, msgspec.Meta(ge=0)]
Label = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class EventError(SpendtrailError):
    """An event that does not satisfy the UsageEvent contract."""


class AllocationContext(
    msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """Who the call belongs to, as captured. The registry decides whether it is valid."""

    business_unit: Label | None = None
    application: Label | None = None
    environment: Label | None = None
    workload_class: Label | None = None
    cost_center: Label | None = None
    budget_owner: Label | None = None
    job_id: Label | None = None
    tags: dict[str, str] = {}


# The owner fields of a context, in the order every owner table and export uses.
OWNER_FIELDS = ("business_unit", "application", "environment", "workload_class",
                "cost_center", "budget_owner")


class Usage(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """Usage meters. See the module docstring for which meters are parts of which."""

    input_tokens: Count = 0
    cached_input_tokens: Count = 0
    cache_write_tokens: Count = 0
    cache_write_1h_tokens: Count = 0
    output_tokens: Count = 0
    reasoning_tokens: Count = 0
    input_audio_tokens: Count = 0
    output_audio_tokens: Count = 0
    input_image_tokens: Count = 0
    output_image_tokens: Count = 0
    input_characters: Count = 0
    requests: Count = 0
    images: Count = 0
    seconds: Decimal = Decimal(0)

    def check(self) -> None:
        if self.seconds < 0 or not self.seconds.is_finite():
            raise EventError(f"usage.seconds: expected a non-negative number, got {self.seconds}")
        if self.cached_input_tokens + self.cache_write_tokens > self.input_tokens:
            raise EventError(
                "usage: cached_input_tokens + cache_write_tokens exceed input_tokens "
                f"({self.cached_input_tokens} + {self.cache_write_tokens} > {self.input_tokens})"
            )
        if self.cache_write_1h_tokens > self.cache_write_tokens:
            raise EventError(
                f"usage: cache_write_1h_tokens ({self.cache_write_1h_tokens}) exceed "
                f"cache_write_tokens ({self.cache_write_tokens})"
            )
        if self.reasoning_tokens > self.output_tokens:
            raise EventError(
                f"usage: reasoning_tokens ({self.reasoning_tokens}) exceed output_tokens "
                f"({self.output_tokens})"
            )


METERS: tuple[str, ...] = Usage.__struct_fields__

# What providers call their standard tier; an event records it as no tier at all.
_STANDARD_TIERS = frozenset({"default", "standard", "auto"})
ServiceTier = Annotated[str, msgspec.Meta(min_length=1, max_length=50)]


def service_tier_of(value: object) -> str | None:
    """A provider's service tier as events record it: lower case, None for the standard tier
    (``default``, ``standard``, ``auto``) and for anything that is not a non-empty string."""
    if not isinstance(value, str):
        return None
    tier = value.strip().lower()[:50]
    return None if not tier or tier in _STANDARD_TIERS else tier


class UsageEvent(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """One attempt of one call to a provider. Immutable once written to the journal."""

    event_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    request_id: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    attempt: Annotated[int, msgspec.Meta(ge=1)] = 1
    started_at: datetime
    ended_at: datetime | None = None
    provider: Label
    endpoint: Annotated[str, msgspec.Meta(max_length=200)] = "/v1/chat/completions"
    model_requested: Label | None = None
    model_served: Label | None = None
    http_status: Annotated[int, msgspec.Meta(ge=100, le=599)] | None = None
    outcome: Outcome = "success"
    context: AllocationContext = msgspec.field(default_factory=AllocationContext)
    usage: Usage = msgspec.field(default_factory=Usage)
    raw_usage: dict[str, Any] | None = None
    service_tier: ServiceTier | None = None
    provider_request_id: Label | None = None
    response_id: Label | None = None
    gateway_key_id: Label | None = None
    source: Label = "file"

    def __post_init__(self) -> None:
        if self.service_tier is not None:
            self.service_tier = service_tier_of(self.service_tier)
        self.started_at = _as_utc(self.started_at, "started_at")
        if self.ended_at is not None:
            self.ended_at = _as_utc(self.ended_at, "ended_at")
            if self.ended_at < self.started_at:
                raise EventError("ended_at is before started_at")
        self.usage.check()

    @property
    def model(self) -> str | None:
        """The model that was billed: the one served, else the one requested."""
        return self.model_served or self.model_requested

    @property
    def usage_known(self) -> bool:
        """False for an interrupted attempt: its empty usage means unknown, not zero."""
        return self.outcome != INTERRUPTED

    @property
    def billable(self) -> bool:
        return self.outcome == "success"


def _as_utc(value: datetime, field: str) -> datetime:
    if value.tzinfo is None:
        raise EventError(f"{field}: timestamp must carry a UTC offset, got {value.isoformat()}")
    return value.astimezone(UTC)


def outcome_for_status(status: int) -> Outcome:
    if status < 400:
        return "success"
    if status == 408 or status == 504:
        return "timeout"
    if status == 499:
        return "cancelled"
    return "client_error" if status < 500 else "upstream_error"


def new_event(**fields: Any) -> UsageEvent:
    """Build an event in code, filling the ids a capture path would assign."""
    fields.setdefault("event_id", new_event_id())
    fields.setdefault("request_id", fields["event_id"])
    return UsageEvent(**fields)


_encoder = msgspec.json.Encoder(decimal_format="string")
_decoder = msgspec.json.Decoder(UsageEvent)


def encode_event(event: UsageEvent) -> bytes:
    return _encoder.encode(event)


def decode_event(line: bytes | str) -> UsageEvent:
    """Parse and validate one JSON event; raises EventError naming the field."""
    try:
        return _decoder.decode(line)
    except msgspec.ValidationError as exc:
        raise EventError(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise EventError(f"malformed JSON: {exc}") from None
