import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from spendtrail.events import EventError, Usage, decode_event, encode_event, new_event
from spendtrail.events.ids import derived_event_id, new_event_id


def _line(**overrides) -> str:
    event = {
        "event_id": "01",
        "request_id": "r1",
        "started_at": "2026-10-01T12:00:00Z",
        "provider": "openai",
        "model_requested": "gpt-4o-mini",
        "usage": {"input_tokens": 100, "cached_input_tokens": 20, "output_tokens": 50},
        "context": {"application": "search-api", "environment": "production"},
    }
    event.update(overrides)
    return json.dumps(event)


def test_round_trip_keeps_every_field():
    event = new_event(
        started_at=datetime(2026, 10, 1, 12, tzinfo=UTC),
        provider="cometapi",
        model_requested="gpt-4o",
        model_served="gpt-4o-2024-08-06",
        usage=Usage(input_tokens=10, output_tokens=5, reasoning_tokens=2),
        raw_usage={"prompt_tokens": 10, "completion_tokens": 5},
    )
    again = decode_event(encode_event(event))
    assert again == event
    assert again.model == "gpt-4o-2024-08-06"


def test_timestamps_are_normalized_to_utc():
    event = decode_event(_line(started_at="2026-10-01T14:00:00+02:00"))
    assert event.started_at == datetime(2026, 10, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"started_at": "2026-10-01T12:00:00"}, "UTC offset"),
        ({"usage": {"input_tokens": -1}}, "usage.input_tokens"),
        ({"usage": {"input_tokens": 10, "cached_input_tokens": 11}}, "exceed input_tokens"),
        ({"usage": {"output_tokens": 1, "reasoning_tokens": 2}}, "reasoning_tokens"),
        ({"outcome": "great"}, "outcome"),
        ({"colour": "blue"}, "unknown field `colour`"),
        ({"ended_at": "2026-10-01T11:00:00Z"}, "before started_at"),
        ({"context": {"application": ""}}, "context.application"),
    ],
)
def test_invalid_events_name_the_field(overrides, message):
    with pytest.raises(EventError, match=message):
        decode_event(_line(**overrides))


def test_malformed_json_is_an_event_error():
    with pytest.raises(EventError, match="malformed JSON"):
        decode_event('{"event_id": "01", "request_')


def test_event_ids_are_unique_uuid7_in_time_order():
    ids = [new_event_id() for _ in range(2000)]
    assert len(set(ids)) == 2000
    assert all(i[14] == "7" for i in ids)  # the version nibble
    assert [i[:13] for i in ids] == sorted(i[:13] for i in ids)  # millisecond prefix ordered
    assert all(str(uuid.UUID(i)) == i and uuid.UUID(i).variant == uuid.RFC_4122 for i in ids)


def test_derived_event_ids_are_fixed_by_the_source_record():
    at = datetime(2026, 10, 5, 12, tzinfo=UTC)
    first = derived_event_id(at, "litellm:chatcmpl-1")
    assert derived_event_id(at, "litellm:chatcmpl-1") == first  # a replay: the same id
    assert derived_event_id(at, "litellm:chatcmpl-2") != first
    later = derived_event_id(at + timedelta(milliseconds=1), "litellm:chatcmpl-1")
    assert later > first  # time-ordered like new ids
    assert first[14] == "7" and first[19] in "89ab"  # UUIDv7 version and variant
