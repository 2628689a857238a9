"""The gateway's pure parts: usage parsing, the SSE tracker, retry linking, the policy."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from factories import example_registry
from gateway_upstream import CHAT_USAGE

from spendtrail.events import Usage
from spendtrail.events.linking import RetryLinker, retry_count
from spendtrail.events.usage import SseTracker, facts_from_body, usage_from_openai
from spendtrail.gateway import GatewayConfigError, Policy, PolicyError, load_policy, upstream_key
from spendtrail.gateway.identity import Identity, Refusal, resolve
from spendtrail.gateway.keys import GatewayKey
from spendtrail.registry import RegistryError, parse_registry


def test_usage_maps_openai_details_onto_meters():
    assert usage_from_openai(CHAT_USAGE) == Usage(
        input_tokens=12, cached_input_tokens=4, output_tokens=5, reasoning_tokens=2, requests=1)
    audio = {"prompt_tokens": 30, "completion_tokens": 20,
             "prompt_tokens_details": {"audio_tokens": 10},
             "completion_tokens_details": {"audio_tokens": 15}}
    assert usage_from_openai(audio) == Usage(input_tokens=30, output_tokens=20,
                                             input_audio_tokens=10, output_audio_tokens=15,
                                             requests=1)
    responses = {"input_tokens": 9, "input_tokens_details": {"cached_tokens": 3},
                 "output_tokens": 4, "output_tokens_details": {"reasoning_tokens": 1}}
    assert usage_from_openai(responses) == Usage(input_tokens=9, cached_input_tokens=3,
                                                 output_tokens=4, reasoning_tokens=1, requests=1)


def test_inconsistent_or_odd_usage_stays_a_valid_event():
    odd = {"prompt_tokens": 5, "completion_tokens": True, "total_tokens": -3,
           "prompt_tokens_details": {"cached_tokens": 9}, "completion_tokens_details": None}
    usage = usage_from_openai(odd)
    assert usage == Usage(input_tokens=5, cached_input_tokens=5, requests=1)
    usage.check()


def test_images_are_counted_from_the_response():
    body = {"data": [{"url": "a"}, {"url": "b"}, {"url": "c"}],
            "usage": {"input_tokens": 50, "output_tokens": 4000}}
    facts = facts_from_body("/v1/images/generations", body)
    assert facts.usage == Usage(input_tokens=50, output_tokens=4000, images=3, requests=1)
    assert facts_from_body("/v1/images/generations", {"data": []}).usage == Usage(requests=1)


def _chat_stream(*, usage: bool) -> bytes:
    base = {"id": "chatcmpl-9", "model": "gpt-4o-mini", "object": "chat.completion.chunk"}
    extra = {"usage": None} if usage else {}
    chunks = [{**base, "choices": [{"index": 0, "delta": {"content": w}}], **extra}
              for w in ("a", "b")]
    if usage:
        chunks.append({**base, "choices": [], "usage": CHAT_USAGE})
    events = [f"data: {json.dumps(c)}\r\n\r\n".encode() for c in chunks]
    return b"".join(events) + b"data: [DONE]\r\n\r\n"


def test_tracker_reads_any_split_of_the_stream():
    stream = _chat_stream(usage=True)
    for size in (1, 7, 64, len(stream)):
        tracker = SseTracker(strip_usage_chunk=True)
        events = []
        for start in range(0, len(stream), size):
            events += tracker.feed(stream[start:start + size])
        events += tracker.flush()
        # What the caller gets is byte for byte the stream it would get had we not asked
        # the provider for usage: no usage chunk, no `"usage": null` on the others.
        assert b"".join(e.raw for e in events if e.forward) == _chat_stream(usage=False)
        assert [(e.forward, e.terminal) for e in events] == [
            (True, False), (True, False), (False, False), (True, True)]
        assert tracker.facts.usage == usage_from_openai(CHAT_USAGE)
        assert (tracker.facts.response_id, tracker.facts.model) == ("chatcmpl-9", "gpt-4o-mini")
        assert tracker.finished and not tracker.failed


def test_tracker_passes_a_run_of_content_chunks_on_as_one_piece():
    """After the first chunk (id, model), content chunks are neither split nor decoded: a
    run of them is one piece, byte for byte what the provider sent less the null usage
    field (compact or not), blank lines included."""
    first = b'data: {"id":"chatcmpl-1","model":"m","choices":[],"usage":null}\n\n'
    run = (b'data: {"id":"chatcmpl-1","choices":[{"delta":{"content":"a"}}],"usage":null}\n\n'
           b'data: {"id": "chatcmpl-1", "choices": [{"delta": {"content": "b"}}], '
           b'"usage": null}\n\n\n')
    tracker = SseTracker(strip_usage_chunk=True)
    assert [e.raw for e in tracker.feed(first)] == [
        b'data: {"id":"chatcmpl-1","model":"m","choices":[]}\n\n']
    [piece] = tracker.feed(run)
    assert piece.raw == (b'data: {"id":"chatcmpl-1","choices":[{"delta":{"content":"a"}}]}\n\n'
                         b'data: {"id": "chatcmpl-1", "choices": [{"delta": {"content": "b"}}]}'
                         b'\n\n\n')
    assert piece.forward and not piece.terminal
    usage = b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}}\n\n'
    events = tracker.feed(usage + b"data: [DONE]\n\n")
    assert [(e.forward, e.terminal) for e in events] == [(False, False), (True, True)]
    assert tracker.facts.usage == Usage(input_tokens=3, output_tokens=1, requests=1)


def test_tracker_keeps_the_usage_chunk_when_the_client_asked():
    tracker = SseTracker(strip_usage_chunk=False)
    events = tracker.feed(_chat_stream(usage=True))
    assert all(e.forward for e in events)
    assert b"".join(e.raw for e in events) == _chat_stream(usage=True)  # untouched


def test_tracker_spots_responses_terminal_and_error_events():
    tracker = SseTracker()
    completed = {"type": "response.completed",
                 "response": {"id": "resp_1", "model": "m", "usage": {"input_tokens": 2}}}
    [event] = tracker.feed(f"event: response.completed\ndata: {json.dumps(completed)}\n\n"
                           .encode())
    assert event.terminal and tracker.facts.usage == Usage(input_tokens=2, requests=1)
    failing = SseTracker()
    [error] = failing.feed(b'data: {"error": {"message": "overloaded"}}\n\n')
    assert error.terminal and failing.failed and failing.facts.usage is None


def test_tracker_passes_on_an_oversized_event_unparsed():
    tracker = SseTracker(max_event_bytes=100)
    [event] = tracker.feed(b"data: " + b"x" * 200)
    assert event.forward and tracker.overflowed and tracker.facts.usage is None


def test_linker_without_idempotency_key():
    linker = RetryLinker()
    call = {"key_id": "gk_1", "idempotency_key": None, "method": "POST", "path": "/v1/x",
            "body": b"{}"}
    first = linker.link(**call, retry_count=0, event_id="e1")
    linker.settle("e1", 500)
    retry = linker.link(**call, retry_count=1, event_id="e2")
    assert first == ("e1", 1) and retry == ("e1", 2)
    assert linker.link(**{**call, "key_id": "gk_2"}, retry_count=0, event_id="e3") == ("e3", 1)
    # A retry whose first attempt was seen elsewhere is a request of its own.
    assert RetryLinker().link(**call, retry_count=2, event_id="e4") == ("e4", 3)


def test_linker_never_merges_identical_concurrent_calls():
    linker = RetryLinker()
    call = {"key_id": "gk_1", "idempotency_key": None, "method": "POST", "path": "/v1/x",
            "body": b"{}"}
    assert linker.link(**call, retry_count=0, event_id="a1") == ("a1", 1)
    assert linker.link(**call, retry_count=0, event_id="b1") == ("b1", 1)
    linker.settle("a1", 500)
    linker.settle("b1", None)  # no response at all: the SDK retries that too
    first, second = (linker.link(**call, retry_count=1, event_id=e) for e in ("a2", "b2"))
    assert {first, second} == {("a1", 2), ("b1", 2)}
    # A request that succeeded takes no more attempts; a refused one neither.
    linker.settle("a1", 200)
    linker.settle("b1", 400)
    assert linker.link(**call, retry_count=2, event_id="c3") == ("c3", 3)


def test_linker_prefers_a_failed_request_to_one_in_flight():
    linker = RetryLinker()
    call = {"key_id": "gk_1", "idempotency_key": None, "method": "POST", "path": "/v1/x",
            "body": b"{}"}
    linker.link(**call, retry_count=0, event_id="slow")  # still in flight
    linker.link(**call, retry_count=0, event_id="failed")
    linker.settle("failed", 503)
    assert linker.link(**call, retry_count=1, event_id="r") == ("failed", 2)
    # A client that timed out retries while its first attempt is still in flight.
    assert linker.link(**call, retry_count=1, event_id="r2") == ("slow", 2)


def test_linker_with_idempotency_key_counts_attempts_without_the_sdk_header():
    linker = RetryLinker()
    call = {"key_id": "gk_1", "method": "POST", "path": "/v1/x", "body": b"{}",
            "retry_count": None}
    ids = [linker.link(**call, idempotency_key="k", event_id=f"e{i}") for i in range(3)]
    assert [attempt for _, attempt in ids] == [1, 2, 3]
    assert len({request_id for request_id, _ in ids}) == 1
    other_key = linker.link(**{**call, "key_id": "gk_2"}, idempotency_key="k", event_id="e9")
    assert other_key[0] != ids[0][0]


def test_linker_forgets_old_and_excess_entries():
    linker = RetryLinker(max_entries=2, ttl_seconds=0)
    call = {"key_id": "gk_1", "idempotency_key": None, "method": "POST", "path": "/v1/x"}
    linker.link(**call, body=b"1", retry_count=0, event_id="e1")
    linker.settle("e1", 500)
    assert linker.link(**call, body=b"1", retry_count=1, event_id="e2") == ("e2", 2)  # expired
    for number, body in enumerate((b"2", b"3", b"4")):
        linker.link(**call, body=body, retry_count=0, event_id=f"n{number}")
    assert len(linker._slots) == 2


@pytest.mark.parametrize(("value", "expected"), [
    (None, None), ("0", 0), ("3", 3), ("-1", None), ("x", None), ("100000", None)])
def test_retry_count_header(value, expected):
    assert retry_count(value) == expected


def test_policy_parsing_and_defaults(tmp_path):
    # Strictness is the registry's, whatever the environment is called; a rule overrides it.
    assert Policy().mode_for("prod", strict=True) == "reject"
    assert Policy().mode_for("production") == "quarantine"
    assert Policy({"prod": "quarantine"}).mode_for("prod", strict=True) == "quarantine"
    path = tmp_path / "policy.yaml"
    path.write_text("policy:\n  default: reject\n  environments:\n    development: quarantine\n")
    policy = load_policy(path)
    assert (policy.mode_for("staging"), policy.mode_for("development")) == (
        "reject", "quarantine")
    with pytest.raises(PolicyError, match=r"environments\.staging: expected reject or quarantine"):
        Policy.parse({"environments": {"staging": "warn"}})
    with pytest.raises(PolicyError, match="unknown keys"):
        Policy.parse({"envs": {}})
    path.write_text("policy: [\n")
    with pytest.raises(GatewayConfigError, match="malformed YAML"):
        load_policy(path)


def test_upstream_key_comes_from_the_environment():
    assert upstream_key("cometapi", {"COMETAPI_KEY": "a"}) == "a"
    assert upstream_key("cometapi", {"COMETAPI_KEY": "a", "SPENDTRAIL_UPSTREAM_KEY": "b"}) == "b"
    with pytest.raises(GatewayConfigError, match="set SPENDTRAIL_UPSTREAM_KEY or OPENAI_API_KEY"):
        upstream_key("openai", {"COMETAPI_KEY": "a"})


KEY = GatewayKey(id="gk_1", application="search-summaries", environment=None, key_hash="h",
                 key_prefix="sk-st-abc", created_at=datetime(2026, 1, 1, tzinfo=UTC),
                 created_by="t")


@pytest.fixture(scope="module")
def registry():
    return example_registry()


def test_resolve_allocates_what_the_registry_allows(registry):
    found = resolve(KEY, {"X-Spendtrail-Environment": "staging",
                          "X-Spendtrail-Workload": "batch"}, registry, Policy())
    assert isinstance(found, Identity) and found.status == "allocated"
    assert found.context.cost_center is None  # the registry fills the owner at ingest


def test_resolve_missing_workload_follows_the_policy(registry):
    headers = {"X-Spendtrail-Environment": "production"}
    refused = resolve(KEY, headers, registry, Policy())
    assert isinstance(refused, Refusal) and refused.status == 400
    assert refused.message == ("X-Spendtrail-Workload: is required for application "
                               "'search-summaries' (allowed: batch, eval, user_facing)")
    quarantined = resolve(KEY, headers, registry, Policy({"production": "quarantine"}))
    assert quarantined.reasons == ("missing_workload_class",)


PROD_REGISTRY = """
business_units: [{id: bu, name: BU}]
cost_centers: [{id: CC-1, name: CC, business_unit: bu}]
budget_owners: [{id: o, name: O, role: lead}]
environments:
  - {id: prod, strict: %s}
  - {id: dev}
workload_classes: [{id: batch}]
applications:
  - {id: app, name: App, business_unit: bu, cost_center: CC-1, budget_owner: o,
     environments: [prod, dev], workload_classes: [batch]}
shared_pool: {id: pool, name: Pool, business_unit: bu, cost_center: CC-1, budget_owner: o,
              environments: [prod], workload_classes: [batch]}
"""


@pytest.mark.parametrize(("strict", "status"), [("true", "refused"), ("false", "quarantined")])
def test_the_registry_says_which_environments_are_strict(strict, status):
    """Production called `prod`: strict by the registry's flag, not by a literal name."""
    registry = parse_registry(PROD_REGISTRY % strict)
    key = replace(KEY, application="app")
    found = resolve(key, {"X-Spendtrail-Environment": "prod", "X-Spendtrail-Workload": "fun"},
                    registry, Policy())
    assert ("refused" if isinstance(found, Refusal) else found.status) == status
    # An unknown environment cannot pick a milder policy than the app's strictest one.
    found = resolve(key, {"X-Spendtrail-Environment": "moon", "X-Spendtrail-Workload": "batch"},
                    registry, Policy())
    assert ("refused" if isinstance(found, Refusal) else found.status) == status
    assert Policy({"production": "reject", "dev": "quarantine"}).unknown_environments(
        registry) == ["production"]


def test_strict_must_be_true_or_false_and_unset_keeps_old_documents():
    with pytest.raises(RegistryError, match=r"environment 'prod': strict: expected true or "
                       r"false, got the string 'yes please'"):
        parse_registry(PROD_REGISTRY % "yes please")
    document = parse_registry(PROD_REGISTRY % "false").to_document()
    assert {"id": "prod"} in document["environments"]  # no `strict: false` in the hash
    assert {"id": "prod", "strict": True} in parse_registry(
        PROD_REGISTRY % "true").to_document()["environments"]


@pytest.mark.parametrize("tags", ["novalue", "a=", "bad key=1", ",".join(f"k{i}=v"
                                                                         for i in range(21))])
def test_resolve_refuses_malformed_tags_whatever_the_policy(registry, tags):
    refused = resolve(KEY, {"X-Spendtrail-Tags": tags}, registry, Policy({}, "quarantine"))
    assert isinstance(refused, Refusal) and refused.param == "X-Spendtrail-Tags"


def test_resolve_without_a_registry_serves_and_quarantines():
    found = resolve(KEY, {}, None, Policy())
    assert (found.status, found.reasons) == ("quarantined", ("no_registry",))
