"""Usage events (docs/gateway.md#events, docs/hook.md): the one record every capture path
produces and every layer reads, and what both capture paths (the gateway and the in-process
hook) share to build it. Imports only ``errors``.

- ``model.py``: ``UsageEvent`` and its meters, outcomes and allocation context.
- ``ids.py``: time-ordered UUIDv7 event ids, new or derived from an imported record's id.
- ``usage.py``: usage from provider responses and SSE streams; the metered endpoints.
- ``linking.py``: attempts linked into logical requests, so retries count apart from calls.
"""

from spendtrail.events.ids import derived_event_id, new_event_id
from spendtrail.events.model import (
    INTERRUPTED,
    METERS,
    OUTCOMES,
    AllocationContext,
    EventError,
    Usage,
    UsageEvent,
    decode_event,
    encode_event,
    new_event,
    outcome_for_status,
    service_tier_of,
)

__all__ = [
    "INTERRUPTED",
    "METERS",
    "OUTCOMES",
    "AllocationContext",
    "EventError",
    "Usage",
    "UsageEvent",
    "decode_event",
    "derived_event_id",
    "encode_event",
    "new_event",
    "new_event_id",
    "outcome_for_status",
    "service_tier_of",
]
