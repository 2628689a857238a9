"""OpenTelemetry GenAI spans exported by the real opentelemetry-sdk (OTLP/HTTP protobuf
exporter) to the receiver on loopback, journaled, then ingested on both ledger backends; the
JSON encoding, replays, ignored and bad spans."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.request

import pytest
import sqlalchemy as sa
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from spendtrail.integrations.otlp_receiver import COUNTERS, make_app, serve
from spendtrail.integrations.owners import OTEL_SECTIONS, load_owner_map
from spendtrail.journal.spool import sealed_files
from spendtrail.ledger.ingest import Ingester
from spendtrail.ledger.schema import cost_entries, events

MAPPING = """\
defaults:
  workload_class: batch
services:
  search-worker: {application: search-summaries}
"""


class Receiver:
    """The receiver served from its own thread and event loop, stopped (and its spool
    sealed) by ``close``."""

    def __init__(self, spool, owners) -> None:
        self.app = make_app(spool, owners, rotate_seconds=60)
        self.url = ""
        ready = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.stop = asyncio.Event()

        def on_ready(url: str) -> None:
            self.url = url
            ready.set()

        def run() -> None:
            self.loop.run_until_complete(serve(self.app, "127.0.0.1", 0, self.stop, on_ready))

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert ready.wait(30), "the receiver did not start"

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(30)
        self.loop.close()

    @property
    def counters(self):
        return self.app[COUNTERS]


@pytest.fixture
def receiver(tmp_path):
    path = tmp_path / "otel-owners.yaml"
    path.write_text(MAPPING)
    running = Receiver(tmp_path / "spool", load_owner_map(path, OTEL_SECTIONS))
    yield running
    if running.thread.is_alive():
        running.close()


def export_spans(url: str):
    """What an instrumented search worker emits: an HTTP server span holding one chat call
    (with cache reads), an agent span, and a chat span whose usage cannot be right."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create(
            {"service.name": "search-worker", "deployment.environment.name": "production"}
        )
    )
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=url)))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("GET /search", attributes={"http.route": "/search"}):
        with tracer.start_as_current_span(
            "invoke_agent summarizer",
            attributes={
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.provider.name": "cometapi",
                "gen_ai.usage.input_tokens": 1000,
                "gen_ai.usage.output_tokens": 500,
            },
        ):
            with tracer.start_as_current_span(
                "chat gpt-4o-mini",
                attributes={
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "cometapi",
                    "gen_ai.request.model": "gpt-4o-mini",
                    "gen_ai.response.model": "gpt-4o-mini",
                    "gen_ai.response.id": "chatcmpl-otel-1",
                    "gen_ai.usage.input_tokens": 1000,
                    "gen_ai.usage.output_tokens": 500,
                    "gen_ai.usage.cache_read.input_tokens": 200,
                },
            ):
                pass
        with tracer.start_as_current_span(
            "chat gpt-4o",
            attributes={
                "gen_ai.system": "cometapi",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.usage.input_tokens": 10,
                "gen_ai.usage.cache_read.input_tokens": 50,
            },
        ) as bad:
            bad.set_status(Status(StatusCode.OK))
        with tracer.start_as_current_span(
            "chat gpt-4o failed",
            attributes={
                "gen_ai.system": "cometapi",
                "gen_ai.request.model": "gpt-4o",
                "http.response.status_code": 503,
            },
        ) as failed:
            failed.set_status(Status(StatusCode.ERROR, "overloaded"))
    provider.shutdown()
    return memory.get_finished_spans()


def ledger_rows(engine):
    with engine.connect() as conn:
        return {
            row["response_id"] or row["model_requested"]: dict(row)
            for row in conn.execute(
                sa.select(events, cost_entries.c.amount_pico).join(
                    cost_entries, cost_entries.c.event_id == events.c.event_id
                )
            ).mappings()
        }


def test_sdk_export_lands_as_events_and_a_replay_adds_nothing(receiver, seeded, tmp_path):
    spans = export_spans(receiver.url)
    assert len(spans) == 5
    counters = receiver.counters
    assert (counters.journaled, counters.ignored, counters.rejected) == (2, 2, 1)

    # The exporter sends the same spans again (a retry after a lost answer).
    assert OTLPSpanExporter(endpoint=receiver.url).export(spans).name == "SUCCESS"
    receiver.close()
    assert counters.journaled == 4

    report = Ingester(seeded).ingest_spool(tmp_path / "spool")
    assert (report.read, report.inserted, report.duplicates) == (4, 2, 2)
    assert sealed_files(tmp_path / "spool") == []  # all moved to ingested/
    rows = ledger_rows(seeded)
    assert len(rows) == 2
    chat = rows["chatcmpl-otel-1"]
    assert (chat["provider"], chat["model_served"], chat["endpoint"], chat["source"]) == (
        "cometapi",
        "gpt-4o-mini",
        "/v1/chat/completions",
        "otel",
    )
    assert (
        chat["allocation_status"],
        chat["application"],
        chat["environment"],
        chat["workload_class"],
    ) == ("allocated", "search-summaries", "production", "batch")
    usage = json.loads(chat["usage"])
    assert (usage["input_tokens"], usage["cached_input_tokens"], usage["output_tokens"]) == (
        1000,
        200,
        500,
    )
    assert chat["amount_pico"] == 435_000_000  # 800*0.15 + 200*0.075 + 500*0.60 per million
    span = next(s for s in spans if s.name == "chat gpt-4o-mini")
    assert chat["request_id"] == (f"{span.context.trace_id:032x}-{span.context.span_id:016x}")
    failed = rows["gpt-4o"]
    assert (failed["outcome"], failed["http_status"]) == ("upstream_error", 503)


def otlp_json(resource: dict, spans: list[dict]) -> bytes:
    def attrs(values: dict) -> list[dict]:
        return [
            {"key": k, "value": {"intValue": str(v)} if isinstance(v, int) else {"stringValue": v}}
            for k, v in values.items()
        ]

    return json.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {"attributes": attrs(resource)},
                    "scopeSpans": [
                        {
                            "scope": {"name": "manual"},
                            "spans": [
                                {
                                    "traceId": "5b8efff798038103d269b633813fc60c",
                                    "spanId": f"eee19b7ec3c1b17{i}",
                                    "name": "chat",
                                    "kind": 3,
                                    "startTimeUnixNano": "1791201600000000000",
                                    "endTimeUnixNano": "1791201601000000000",
                                    "attributes": attrs(span),
                                }
                                for i, span in enumerate(spans)
                            ],
                        }
                    ],
                }
            ]
        }
    ).encode()


def post(url: str, body: bytes, content_type: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, body, {"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_json_encoding_owner_from_resource_attributes(receiver, seeded, tmp_path):
    body = otlp_json(
        {
            "service.name": "unmapped-service",
            "spendtrail.application": "contract-review",
            "spendtrail.environment": "staging",
        },
        [
            {
                "gen_ai.provider.name": "cometapi",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.usage.input_tokens": 100,
                "gen_ai.usage.output_tokens": 10,
            },
            {"gen_ai.provider.name": "cometapi", "gen_ai.usage.input_tokens": -1},
            {"http.route": "/health"},
        ],
    )
    status, answer = post(receiver.url, body, "application/json")
    assert status == 200
    partial = json.loads(answer)["partialSuccess"]
    assert partial["rejectedSpans"] == "1"
    assert "eee19b7ec3c1b171: gen_ai.usage.input_tokens" in partial["errorMessage"]
    assert post(receiver.url, body, "application/json")[0] == 200  # replayed
    receiver.close()
    assert (receiver.counters.journaled, receiver.counters.ignored) == (2, 2)

    report = Ingester(seeded).ingest_spool(tmp_path / "spool")
    assert (report.inserted, report.duplicates) == (1, 1)
    (row,) = ledger_rows(seeded).values()
    assert (row["application"], row["environment"], row["workload_class"]) == (
        "contract-review",
        "staging",
        "batch",
    )
    assert row["request_id"] == "5b8efff798038103d269b633813fc60c-eee19b7ec3c1b170"
    assert json.loads(row["context"])["tags"] == {"otel.service": "unmapped-service"}


def test_unknown_service_is_quarantined_not_dropped(receiver, seeded, tmp_path):
    body = otlp_json(
        {"service.name": "nobody-knows"},
        [
            {
                "gen_ai.system": "cometapi",
                "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.usage.input_tokens": 5,
                "gen_ai.usage.output_tokens": 5,
            }
        ],
    )
    assert post(receiver.url, body, "application/json")[0] == 200
    receiver.close()
    report = Ingester(seeded).ingest_spool(tmp_path / "spool")
    assert (report.inserted, report.quarantined) == (1, 1)
    (row,) = ledger_rows(seeded).values()
    assert "missing_owner" in row["allocation_reasons"]


def test_bad_requests_are_refused_and_the_receiver_goes_on(receiver):
    assert post(receiver.url, b"not protobuf \xff\xff", "application/x-protobuf")[0] == 400
    status, text = post(receiver.url, b"{", "application/json")
    assert status == 400 and b"not an OTLP JSON trace export" in text
    assert post(receiver.url, b"{}", "text/plain")[0] == 415
    assert post(receiver.url, otlp_json({}, []), "application/json")[0] == 200
