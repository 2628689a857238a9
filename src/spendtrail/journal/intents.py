"""Intent records: an attempt journaled before it goes upstream (docs/gateway.md).

An intent is the event the attempt would be if it never completed (outcome ``interrupted``,
no usage), wrapped as ``{"intent": <event>}`` on its own spool line. Its completion is the
attempt's event, with the same event id, written later to the same spool. A later intent
line for the same id (a stream, once the provider's request id is known) replaces the
earlier one.
"""

from __future__ import annotations

from spendtrail.events.model import INTERRUPTED, EventError, UsageEvent, decode_event, encode_event

INTENT_PREFIX = b'{"intent":'


def encode_intent(event: UsageEvent) -> bytes:
    return INTENT_PREFIX + encode_event(event) + b"}"


def is_intent(data: bytes) -> bool:
    return data.startswith(INTENT_PREFIX)


def decode_intent(data: bytes) -> UsageEvent:
    """Parse one intent line (without its newline); raises EventError naming the problem."""
    if not data.endswith(b"}"):
        raise EventError("malformed intent record: it does not end with '}'")
    event = decode_event(data[len(INTENT_PREFIX) : -1])
    if event.outcome != INTERRUPTED:
        raise EventError(f"intent record: outcome must be {INTERRUPTED!r}, got {event.outcome!r}")
    return event
