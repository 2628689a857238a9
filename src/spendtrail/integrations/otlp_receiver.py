"""The OTLP/HTTP receiver: ``POST /v1/traces`` -> GenAI span events journaled to the spool.

Like the gateway, it only appends to the journal; ``spendtrail ingest`` (or a running
``ingest --follow``) moves the events into the ledger. The answer follows OTLP/HTTP: 200 with
an ``ExportTraceServiceResponse`` in the request's encoding, whose ``partial_success`` counts
the spans that were rejected (bad GenAI spans) and says why; an undecodable body is a 400.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceResponse,
)

from spendtrail.foreground import run_until_signalled
from spendtrail.integrations.otel import OtlpError, decode_request, spans_to_events
from spendtrail.integrations.owners import OwnerMap
from spendtrail.journal.spool import Spool

log = logging.getLogger("spendtrail.otlp")
MAX_BODY = 32 * 1024 * 1024
ENCODINGS = ("application/x-protobuf", "application/json")


@dataclass
class Counters:
    requests: int = 0
    journaled: int = 0
    ignored: int = 0  # spans that are not GenAI model calls
    rejected: int = 0  # GenAI spans that could not be events


COUNTERS = web.AppKey("counters", Counters)


def make_app(spool_dir: Path, owners: OwnerMap, *, rotate_seconds: float = 1.0) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)
    spool = Spool(spool_dir, max_age=rotate_seconds)
    counters = Counters()
    app[COUNTERS] = counters

    async def traces(request: web.Request) -> web.Response:
        content_type = request.content_type
        if content_type not in ENCODINGS:
            return web.Response(status=415, text=f"expected one of {', '.join(ENCODINGS)}")
        try:
            export = decode_request(await request.read(), content_type)
        except OtlpError as exc:
            return web.Response(status=400, text=str(exc))
        report = spans_to_events(export, owners)
        for event in report.events:
            spool.append(event)
        counters.requests += 1
        counters.journaled += len(report.events)
        counters.ignored += report.ignored
        counters.rejected += len(report.bad)
        response = ExportTraceServiceResponse()
        if report.bad:
            log.warning("rejected %d GenAI spans: %s", len(report.bad), "; ".join(report.bad))
            response.partial_success.rejected_spans = len(report.bad)
            response.partial_success.error_message = "; ".join(report.bad)[:4000]
        if content_type == "application/json":
            return web.Response(
                text=json_format.MessageToJson(response), content_type="application/json"
            )
        return web.Response(
            body=response.SerializeToString(), content_type="application/x-protobuf"
        )

    async def seal(app: web.Application):
        task = asyncio.create_task(_seal_while_idle(spool, rotate_seconds))
        yield
        task.cancel()
        spool.close()

    app.router.add_post("/v1/traces", traces)
    app.cleanup_ctx.append(seal)
    return app


async def _seal_while_idle(spool: Spool, every: float) -> None:
    """Seal the spool file of a quiet receiver, so its last events reach the ledger."""
    while True:
        await asyncio.sleep(every)
        spool.seal_if_idle()


async def serve(
    app: web.Application,
    host: str,
    port: int,
    stop: asyncio.Event,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until ``stop`` is set; ``on_ready`` gets the traces URL once the port is bound
    (port 0 picks a free one). The spool is sealed on the way out."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        if on_ready is not None:
            bound = runner.addresses[0][1]
            where = f"[{host}]" if ":" in host else host
            on_ready(f"http://{where}:{bound}/v1/traces")
        await stop.wait()
    finally:
        await runner.cleanup()


def run_receiver(
    app: web.Application,
    host: str,
    port: int,
    *,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve in the foreground until SIGINT or SIGTERM, then seal the spool."""
    run_until_signalled(lambda stop: serve(app, host, port, stop, on_ready))
