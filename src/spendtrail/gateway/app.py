"""The gateway's aiohttp application: routes, start-up and the background refresh.

``make_app`` builds the app; ``serve`` runs it until cancelled; ``GatewayServer`` runs it
on a thread of its own (tests, embedding), returning its base URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time

import aiohttp
from aiohttp import web

from spendtrail.gateway.config import GatewayConfig
from spendtrail.gateway.errors import error_response
from spendtrail.gateway.metrics import Metrics
from spendtrail.gateway.proxy import Proxy
from spendtrail.gateway.state import load_snapshot, refresh_snapshot
from spendtrail.journal.spool import Spool
from spendtrail.ledger.db import make_engine
from spendtrail.ledger.follow import follow
from spendtrail.ledger.url import redact_url

log = logging.getLogger("spendtrail.gateway")

PROXY = web.AppKey("proxy", Proxy)
_STALE_AFTER = 60.0  # seconds without a successful refresh before /healthz says so


def make_app(config: GatewayConfig) -> web.Application:
    app = web.Application(client_max_size=config.max_request_bytes)
    spool = Spool(config.spool_dir, max_age=config.rotate_seconds, fsync=config.spool_fsync)
    proxy = Proxy(config, spool, Metrics())
    app[PROXY] = proxy
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/metrics", _metrics)
    app.router.add_route("*", "/v1/{tail:.*}", proxy.handle)
    app.router.add_route("*", "/{tail:.*}", _not_found)
    app.cleanup_ctx.append(_lifecycle)
    return app


async def _lifecycle(app: web.Application):
    """Load keys, registry and prices before the first request; keep them fresh; seal the
    spool periodically so the ingester sees events of a gateway that runs for days."""
    proxy = app[PROXY]
    config = proxy.config
    engine = make_engine(config.ledger_url)
    try:
        proxy.snapshot = await asyncio.to_thread(load_snapshot, engine)
    except Exception as exc:
        engine.dispose()
        raise RuntimeError(f"cannot load gateway keys, registry and prices from "
                           f"{redact_url(config.ledger_url)}: {exc}") from None
    latest = proxy.snapshot.registry.latest()
    unknown = config.policy.unknown_environments(latest[1]) if latest else []
    if unknown:
        log.warning("the header policy names %s, not an environment of the latest registry "
                    "(%s); its rule applies to no call", ", ".join(unknown),
                    ", ".join(latest[1].environments))
    proxy.session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=config.connect_timeout,
                                      sock_read=config.read_timeout),
        auto_decompress=True,
        skip_auto_headers=("User-Agent",),
    )
    task = asyncio.create_task(_background(proxy, engine))
    stop_ingest = threading.Event()
    ingester = threading.Thread(
        target=follow, args=(config.ledger_url, config.spool_dir),
        kwargs={"interval": config.rotate_seconds / 2, "stop": stop_ingest,
                "on_outage": _ledger_outage},
        name="spendtrail-ingest", daemon=True)
    if config.ingest:
        ingester.start()
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await proxy.session.close()
    proxy.spool.close()
    if config.ingest:
        stop_ingest.set()  # one last round ingests the file just sealed
        await asyncio.to_thread(ingester.join, 30)
    engine.dispose()


def _ledger_outage(error: Exception) -> None:
    log.warning("ledger unavailable (%s); events wait in the journal", type(error).__name__)


async def _background(proxy: Proxy, engine) -> None:
    config = proxy.config
    while True:
        await asyncio.sleep(config.refresh_seconds)
        try:
            proxy.snapshot = await asyncio.to_thread(refresh_snapshot, engine, proxy.snapshot)
        except Exception:  # the ledger may be down: serve with what is loaded, say so
            log.warning("refreshing keys, registry and prices failed; serving the last ones",
                        exc_info=True)
        proxy.spool.seal_if_idle()
        try:  # budgets: the ledger's newest spend, without counting twice what is settled
            await asyncio.to_thread(config.budget.reload)
        except Exception:
            log.warning("reloading budgets failed; enforcing the last ones", exc_info=True)


def _snapshot_age(proxy: Proxy) -> float:
    return time.monotonic() - proxy.snapshot.checked_at


async def _healthz(request: web.Request) -> web.Response:
    proxy = request.app[PROXY]
    age = _snapshot_age(proxy)
    healthy = age < max(_STALE_AFTER, 10 * proxy.config.refresh_seconds)
    snapshot = proxy.snapshot
    latest = snapshot.registry.latest()
    return web.json_response(
        {
            "status": "ok" if healthy else "stale",
            "provider": proxy.config.provider,
            "snapshot_age_seconds": round(age, 3),
            "keys": len(snapshot.keys),
            "registry_version": latest[0] if latest else None,
            "price_entries": len(snapshot.catalog.entries),
            "journal_errors": proxy.metrics.journal_errors,
        },
        status=200 if healthy else 503,
    )


async def _metrics(request: web.Request) -> web.Response:
    proxy = request.app[PROXY]
    text = proxy.metrics.render(spool=proxy.config.spool_dir, snapshot_age=_snapshot_age(proxy),
                                keys=len(proxy.snapshot.keys))
    return web.Response(text=text, content_type="text/plain", charset="utf-8",
                        headers={"X-Prometheus-Format": "0.0.4"})


async def _not_found(request: web.Request) -> web.Response:
    return error_response(404, f"no route {request.method} {request.path}; the gateway serves "
                          "/v1/*, /healthz and /metrics", "not_found")


async def serve(config: GatewayConfig, host: str, port: int,
                started: threading.Event | None = None, bound: list | None = None) -> None:
    """Run until cancelled. `bound` receives the (host, port) actually bound (port 0)."""
    runner = web.AppRunner(make_app(config), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, backlog=1024)
        await site.start()
        if bound is not None:
            bound.extend(runner.addresses[0][:2])
        if started is not None:
            started.set()
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


class GatewayServer:
    """The gateway on a background thread with its own event loop."""

    def __init__(self, config: GatewayConfig, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def start(self) -> str:
        started = threading.Event()
        bound: list = []

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._task = self._loop.create_task(
                serve(self.config, self.host, self.port, started, bound))
            try:
                self._loop.run_until_complete(self._task)
            except asyncio.CancelledError:
                pass
            except BaseException as exc:  # reported by start()
                self._error = exc
                started.set()
            finally:
                self._loop.close()

        self._thread = threading.Thread(target=run, name="spendtrail-gateway", daemon=True)
        self._thread.start()
        started.wait(30)
        if self._error is not None:
            raise self._error
        host, port = bound
        return f"http://{host}:{port}"

    def stop(self) -> None:
        if self._loop is not None and self._task is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._task.cancel)
        if self._thread is not None:
            self._thread.join(30)

