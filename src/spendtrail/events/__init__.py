from spendtrail.events.ids import new_event_id
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
    "encode_event",
    "new_event",
    "new_event_id",
    "outcome_for_status",
]
