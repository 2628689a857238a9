"""Usage parsing shared by the gateway and the hook: cache writes and their one-hour part,
image tokens, Anthropic's usage shape and the service tier, from bodies and streams."""

from __future__ import annotations

import json

import pytest
from factories import CLAUDE_METERS

from spendtrail.events import Usage, new_event, service_tier_of
from spendtrail.events.model import EventError
from spendtrail.events.usage import SseTracker, facts_from_body, usage_from_raw

# (what the provider reported, the meters)
USAGES = [
    (
        "OpenAI cache writes",
        {
            "prompt_tokens": 2000,
            "completion_tokens": 10,
            "prompt_tokens_details": {"cached_tokens": 500, "cache_write_tokens": 700},
        },
        Usage(
            input_tokens=2000,
            cached_input_tokens=500,
            cache_write_tokens=700,
            output_tokens=10,
            requests=1,
        ),
    ),
    (
        "new-api Claude, writes split by lifetime",
        {
            "prompt_tokens": 3000,
            "completion_tokens": 40,
            "prompt_tokens_details": {"cached_tokens": 1000, "cached_creation_tokens": 1500},
            "claude_cache_creation_5_m_tokens": 1100,
            "claude_cache_creation_1_h_tokens": 400,
        },
        CLAUDE_METERS,
    ),
    (
        "only the lifetimes reported: their sum is the writes",
        {
            "prompt_tokens": 3000,
            "completion_tokens": 40,
            "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 300},
        },
        Usage(
            input_tokens=3000,
            cache_write_tokens=400,
            cache_write_1h_tokens=300,
            output_tokens=40,
            requests=1,
        ),
    ),
    (
        "Anthropic Messages: uncached input beside cache reads and writes",
        {
            "input_tokens": 200,
            "output_tokens": 90,
            "cache_read_input_tokens": 5000,
            "cache_creation_input_tokens": 1200,
            "cache_creation": {"ephemeral_5m_input_tokens": 200, "ephemeral_1h_input_tokens": 1000},
            "service_tier": "batch",
        },
        Usage(
            input_tokens=6400,
            cached_input_tokens=5000,
            cache_write_tokens=1200,
            cache_write_1h_tokens=1000,
            output_tokens=90,
            requests=1,
        ),
    ),
    (
        "image model: image tokens in and out",
        {
            "input_tokens": 1200,
            "output_tokens": 4300,
            "input_tokens_details": {"text_tokens": 200, "image_tokens": 1000},
            "output_tokens_details": {"text_tokens": 140, "image_tokens": 4160},
        },
        Usage(
            input_tokens=1200,
            input_image_tokens=1000,
            output_tokens=4300,
            output_image_tokens=4160,
            requests=1,
        ),
    ),
    (
        "parts larger than their whole are clamped",
        {
            "prompt_tokens": 100,
            "completion_tokens": 1,
            "prompt_tokens_details": {
                "cached_tokens": 80,
                "cache_write_tokens": 50,
                "image_tokens": 500,
            },
            "claude_cache_creation_1_h_tokens": 90,
        },
        Usage(
            input_tokens=100,
            cached_input_tokens=80,
            cache_write_tokens=20,
            cache_write_1h_tokens=20,
            input_image_tokens=100,
            output_tokens=1,
            requests=1,
        ),
    ),
]


@pytest.mark.parametrize(("raw", "meters"), [u[1:] for u in USAGES], ids=[u[0] for u in USAGES])
def test_usage_meters(raw, meters):
    assert usage_from_raw(raw) == meters
    meters.check()  # every parsed usage makes a valid event


def test_an_image_call_counts_images_beside_its_tokens():
    body = {
        "created": 1,
        "data": [{"b64_json": "..."}],
        "usage": {
            "input_tokens": 50,
            "output_tokens": 4160,
            "input_tokens_details": {"text_tokens": 10, "image_tokens": 40},
        },
    }
    facts = facts_from_body("/v1/images/generations", body)
    assert facts.usage == Usage(
        input_tokens=50, input_image_tokens=40, output_tokens=4160, images=1, requests=1
    )


@pytest.mark.parametrize(
    ("body", "tier"),
    [
        ({"service_tier": "flex"}, "flex"),
        ({"service_tier": "default"}, None),
        ({"service_tier": "PRIORITY"}, "priority"),
        (
            {
                "usage": {
                    "input_tokens": 1,
                    "output_tokens": 1,
                    "cache_read_input_tokens": 0,
                    "service_tier": "batch",
                }
            },
            "batch",
        ),
        (
            {
                "usage": {
                    "input_tokens": 1,
                    "output_tokens": 1,
                    "cache_read_input_tokens": 0,
                    "service_tier": "standard",
                }
            },
            None,
        ),
        ({"service_tier": None}, None),
        ({}, None),
    ],
)
def test_the_service_tier_of_a_response(body, tier):
    assert facts_from_body("/v1/chat/completions", {"id": "x", **body}).service_tier == tier


def sse(*events: dict) -> bytes:
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)


def test_a_stream_takes_the_tier_it_ends_with():
    """The Responses API says "auto" when it starts and the tier used when it completes."""
    tracker = SseTracker()
    started = {
        "type": "response.created",
        "response": {"id": "resp_1", "model": "gpt-5", "service_tier": "auto"},
    }
    done = {
        "type": "response.completed",
        "response": {
            "id": "resp_1",
            "model": "gpt-5",
            "service_tier": "flex",
            "usage": {"input_tokens": 9, "output_tokens": 3},
        },
    }
    tracker.feed(sse(started))
    assert tracker.facts.service_tier is None
    tracker.feed(sse(done))
    assert tracker.facts.service_tier == "flex"
    assert tracker.facts.usage == Usage(input_tokens=9, output_tokens=3, requests=1)


def test_events_record_the_standard_tier_as_none_and_old_events_still_read():
    from datetime import UTC, datetime

    from spendtrail.events import decode_event, encode_event

    at = datetime(2026, 11, 1, tzinfo=UTC)
    assert new_event(started_at=at, provider="openai", service_tier="default").service_tier is None
    batch = new_event(started_at=at, provider="openai", service_tier="Batch")
    assert decode_event(encode_event(batch)).service_tier == "batch"
    old = (
        b'{"event_id":"e1","request_id":"e1","started_at":"2026-11-01T00:00:00Z",'
        b'"provider":"openai","usage":{"input_tokens":5,"cache_write_tokens":2}}'
    )
    event = decode_event(old)
    assert (event.service_tier, event.usage.cache_write_1h_tokens) == (None, 0)
    assert b"service_tier" not in encode_event(event)  # new fields stay out when unset
    with pytest.raises(EventError, match="cache_write_1h_tokens .3. exceed cache_write_tokens"):
        Usage(input_tokens=5, cache_write_tokens=2, cache_write_1h_tokens=3).check()
    assert service_tier_of(42) is None
