"""The gateway's aiohttp application: routes, start-up and the background refresh.

``make_app`` builds the app; ``serve`` runs it until cancelled or stopped by a signal (then
calls in flight get ``config.grace_seconds`` to finish); ``GatewayServer`` runs it on a
thread of its own (tests, embedding), returning its base URL once it is ready.

``/healthz`` answers while the process is alive (an orchestrator's liveness probe);
``/readyz`` answers 200 only once keys, registry and prices are loaded and the journal
takes writes (its readiness probe: no calls are routed here before).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Coroutine
from functools import partial
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong

from spendtrail.gateway.client import UpstreamClient
from spendtrail.gateway.config import GatewayConfig
from spendtrail.gateway.errors import error_body, error_response
from spendtrail.gateway.metrics import Metrics
from spendtrail.gateway.polling import BusyPollSelector
from spendtrail.gateway.proxy import Proxy
from spendtrail.gateway.state import load_snapshot, refresh_snapshot
from spendtrail.journal.backend import open_journal
from spendtrail.ledger.db import make_engine
from spendtrail.ledger.follow import follow, follow_stream
from spendtrail.ledger.url import redact_url
from spendtrail.redact import RedactingFilter

log = logging.getLogger("spendtrail.gateway")

PROXY = web.AppKey("proxy", Proxy)
LOADED = web.AppKey("loaded", asyncio.Event)  # set once the first snapshot is loaded
_LOAD_ERROR = web.AppKey("load_error", list)  # why the first load failed, while it does
_STALE_AFTER = 60.0  # seconds without a successful refresh before /healthz says so
MAX_LINE_BYTES = 8190  # aiohttp's limit for the request line and each header line
# Loggers that may see what a client or the provider sent: aiohttp's and ours.
_GUARDED_LOGGERS = ("aiohttp.access", "aiohttp.client", "aiohttp.internal", "aiohttp.server",
                    "aiohttp.web", "asyncio", "spendtrail.gateway", "spendtrail.ledger")
_log_filter = RedactingFilter()


def guard_logs(*secrets: str) -> None:
    """Mask `secrets` and every credential shape in what the gateway's loggers write."""
    _log_filter.secrets.update(secret for secret in secrets if secret)
    for name in _GUARDED_LOGGERS:
        logger = logging.getLogger(name)
        if _log_filter not in logger.filters:
            logger.addFilter(_log_filter)


def make_app(config: GatewayConfig) -> web.Application:
    app = web.Application(client_max_size=config.max_request_bytes)
    spool = open_journal(config.journal_url, config.spool_dir, max_age=config.rotate_seconds,
                         fsync=config.spool_fsync)
    proxy = Proxy(config, spool, Metrics())
    app[PROXY] = proxy
    app[LOADED] = asyncio.Event()
    app[_LOAD_ERROR] = []
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    app.router.add_route("*", "/v1/{tail:.*}", proxy.handle)
    app.router.add_route("*", "/{tail:.*}", _not_found)
    app.cleanup_ctx.append(_lifecycle)
    return app


async def _lifecycle(app: web.Application):
    """Load keys, registry and prices (in the background: the server answers /healthz and
    /readyz meanwhile, and refuses calls with 503); keep them fresh; seal the spool
    periodically so the ingester sees events of a gateway that runs for days."""
    proxy = app[PROXY]
    config = proxy.config
    engine = make_engine(config.ledger_url)
    proxy.client = UpstreamClient(connect_timeout=config.connect_timeout,
                                  read_timeout=config.read_timeout)
    task = asyncio.create_task(_background(app, engine))
    published = asyncio.create_task(_publish_metrics(proxy)) if config.metrics_dir else None
    stop_ingest = threading.Event()
    ingester = threading.Thread(target=ingest, args=(config, stop_ingest),
                                name="spendtrail-ingest", daemon=True)
    if config.ingest:
        ingester.start()
    yield
    for running in (task, published):
        if running is not None:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
    if config.metrics_dir:  # the last counts, calls drained during the stop included
        proxy.metrics.dump(config.metrics_dir)
    proxy.client.close()
    proxy.spool.close()
    if config.ingest:
        stop_ingest.set()  # one last round ingests the file just sealed
        await asyncio.to_thread(ingester.join, max(config.grace_seconds, 1.0))
    engine.dispose()


def ingest(config: GatewayConfig, stop: threading.Event) -> None:
    """Move the gateway's journal into the ledger until `stop` is set, then one last round.
    With a nats:// journal this is one more member of the ingesters' shared consumer."""
    source = config.journal_url or config.spool_dir
    run = follow_stream if config.journal_url else follow
    run(config.ledger_url, source, interval=config.rotate_seconds / 2, stop=stop,
        on_outage=_ledger_outage)


def _ledger_outage(error: Exception) -> None:
    log.warning("ledger unavailable (%s); events wait in the journal", type(error).__name__)


async def _load(app: web.Application, engine) -> None:
    """The first snapshot, retried every refresh interval until the ledger answers."""
    proxy = app[PROXY]
    config = proxy.config
    while True:
        try:
            proxy.snapshot = await asyncio.to_thread(load_snapshot, engine)
            break
        except Exception as exc:
            error = (f"cannot load gateway keys, registry and prices from "
                     f"{redact_url(config.ledger_url)}: {type(exc).__name__}")
            app[_LOAD_ERROR][:] = [error]
            log.warning("%s; retrying in %g s", error, config.refresh_seconds)
            await asyncio.sleep(config.refresh_seconds)
    app[_LOAD_ERROR].clear()
    app[LOADED].set()
    latest = proxy.snapshot.registry.latest()
    unknown = config.policy.unknown_environments(latest[1]) if latest else []
    if unknown:
        log.warning("the header policy names %s, not an environment of the latest registry "
                    "(%s); its rule applies to no call", ", ".join(unknown),
                    ", ".join(latest[1].environments))


async def _background(app: web.Application, engine) -> None:
    proxy = app[PROXY]
    config = proxy.config
    await _load(app, engine)
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


async def _publish_metrics(proxy: Proxy) -> None:
    """Every second, this worker's counters for the others' /metrics (metrics.py)."""
    while True:
        try:
            proxy.metrics.dump(proxy.config.metrics_dir)
        except OSError:
            log.warning("cannot write this worker's counters to %s", proxy.config.metrics_dir,
                        exc_info=True)
        await asyncio.sleep(1.0)


def _snapshot_age(proxy: Proxy) -> float:
    return time.monotonic() - proxy.snapshot.checked_at if proxy.snapshot else 0.0


def _stale(proxy: Proxy) -> bool:
    return _snapshot_age(proxy) >= max(_STALE_AFTER, 10 * proxy.config.refresh_seconds)


async def _healthz(request: web.Request) -> web.Response:
    """Alive: always 200 while the event loop answers. A stale snapshot (the ledger has not
    answered for a while) is reported, not a reason to restart: the gateway serves with it."""
    proxy = request.app[PROXY]
    snapshot = proxy.snapshot
    providers = sorted({upstream.provider for upstream in proxy.routes.upstreams})
    if snapshot is None:
        return web.json_response({"status": "starting", "providers": providers,
                                  "journal_errors": proxy.metrics.journal_errors,
                                  "pid": os.getpid()})
    latest = snapshot.registry.latest()
    return web.json_response(
        {
            "status": "stale" if _stale(proxy) else "ok",
            "providers": providers,
            "snapshot_age_seconds": round(_snapshot_age(proxy), 3),
            "keys": len(snapshot.keys),
            "registry_version": latest[0] if latest else None,
            "price_entries": len(snapshot.catalog.entries),
            "journal_errors": proxy.metrics.journal_errors,
            "pid": os.getpid(),  # which worker answered (--workers)
        })


async def _readyz(request: web.Request) -> web.Response:
    """Ready for calls: keys, registry and prices loaded, and the journal takes a write.
    The ledger's reachability is reported but does not make a replica unready: every replica
    shares one ledger, and each serves on with its snapshot while events wait in its journal."""
    app = request.app
    proxy = app[PROXY]
    problems = []
    if proxy.snapshot is None:
        problems += app[_LOAD_ERROR] or ["keys, registry and prices are not loaded yet"]
    if (journal := await asyncio.to_thread(_journal_problem, proxy.config.spool_dir)):
        problems.append(journal)
    ledger = "unknown" if proxy.snapshot is None else (
        "unreachable" if _stale(proxy) else "reachable")
    return web.json_response(
        {"status": "not_ready" if problems else "ready", "problems": problems,
         "ledger": ledger, "journal_errors": proxy.metrics.journal_errors,
         "pid": os.getpid()},
        status=503 if problems else 200)


def _journal_problem(spool_dir: Path) -> str | None:
    """Why the spool cannot take an event now, or None: a byte written and removed (the
    permission bits alone say nothing for root or a read-only mount)."""
    probe = spool_dir / f".readyz-{os.getpid()}"
    try:
        spool_dir.mkdir(parents=True, exist_ok=True)
        with probe.open("wb") as file:
            file.write(b"\n")
        probe.unlink()
    except OSError as exc:
        return f"the journal {spool_dir} is not writable: {exc.strerror or exc}"
    return None


async def _metrics(request: web.Request) -> web.Response:
    proxy = request.app[PROXY]
    keys = len(proxy.snapshot.keys) if proxy.snapshot else 0
    metrics, workers = proxy.metrics, 1
    if proxy.config.metrics_dir:  # --workers N: the sum over the workers
        metrics, workers = proxy.metrics.merged(proxy.config.metrics_dir)
    text = metrics.render(spool=proxy.config.spool_dir, snapshot_age=_snapshot_age(proxy),
                          keys=keys, workers=workers)
    return web.Response(text=text, content_type="text/plain", charset="utf-8",
                        headers={"X-Prometheus-Format": "0.0.4"})


async def _not_found(request: web.Request) -> web.Response:
    return error_response(404, f"no route {request.method} {request.path}; the gateway serves "
                          "/v1/*, /healthz, /readyz and /metrics", "not_found")


LOOPS = ("auto", "asyncio", "uvloop")


def run(main: Coroutine[Any, Any, None], loop: str = "auto", busy_poll: float = 0.0) -> None:
    """Run `main` on asyncio's event loop, polling for up to `busy_poll` seconds before it
    sleeps (``polling.py``); on uvloop instead (fewer instructions a call, see
    docs/benchmarks.md, but no polling) with ``loop="uvloop"``, or with ``loop="auto"``
    when it is installed and `busy_poll` is 0."""
    if loop == "uvloop" or (loop == "auto" and not busy_poll):
        try:
            import uvloop  # optional: pip install 'spendtrail[uvloop]'
        except ImportError:
            pass
        else:
            uvloop.run(main)
            return
    if not busy_poll:
        asyncio.run(main)
        return
    polling = partial(asyncio.SelectorEventLoop, BusyPollSelector(busy_poll))
    with asyncio.Runner(loop_factory=polling) as runner:
        runner.run(main)


def listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything else starts, so a busy port is found
    before the ledger is read or an ingester runs. Raises OSError."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart over TIME_WAIT
        sock.bind((host, port))
        sock.listen(1024)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


async def serve(config: GatewayConfig, host: str = "127.0.0.1", port: int = 0,
                started: threading.Event | None = None, bound: list | None = None, *,
                sock: socket.socket | None = None, stop_on_signals: bool = False) -> None:
    """Run until cancelled, or with `stop_on_signals` until SIGINT or SIGTERM: then stop
    accepting, let calls in flight finish for ``config.grace_seconds``, cancel the rest
    (recorded as cancelled), seal the spool and return. A second signal stops at once.
    Signals are taken over whatever their disposition at start: a process started from a
    shell's background job inherits SIGINT ignored. `bound` receives the (host, port)
    actually bound (port 0); `sock` is a socket from ``listen``."""
    guard_logs(*config.routes.keys())
    app = make_app(config)
    # After the drain nothing is in flight; cancelled, the server waits this long at most.
    runner = _Runner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0,
                     max_line_size=MAX_LINE_BYTES, max_field_size=MAX_LINE_BYTES)
    stopping = asyncio.Event()
    if stop_on_signals:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, _on_signal, stopping, task, config.grace_seconds)
    try:
        await runner.setup()
        if sock is None:
            sock = listen(host, port)
        site = web.SockSite(runner, sock)
        await site.start()
        if bound is not None:
            bound.extend(sock.getsockname()[:2])
        if started is not None:
            await app[LOADED].wait()
            started.set()
        await stopping.wait()
        await site.stop()
        await _drain(runner.server, app[PROXY], config.grace_seconds)
    finally:
        await runner.cleanup()
        if stop_on_signals:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)


async def _drain(server: web.Server, proxy: Proxy, grace: float) -> None:
    """Calls in flight get `grace` seconds; those still running then are cancelled, which
    records them (outcome ``cancelled``)."""
    server.pre_shutdown()  # idle connections close now, busy ones after their response
    if proxy.in_flight:
        _, late = await asyncio.wait(set(proxy.in_flight), timeout=grace)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late, timeout=1.0)


def _on_signal(stopping: asyncio.Event, task: asyncio.Task, grace: float) -> None:
    if stopping.is_set():  # asked twice: do not wait for the calls in flight
        task.cancel()
        return
    log.warning("stopping: no new connections; calls in flight have %g s to finish", grace)
    stopping.set()


class _Handler(web.RequestHandler):
    """aiohttp answers what never reaches a route itself: an unparsable request, a header
    line over ``MAX_LINE_BYTES``, an exception escaping a handler. Its plain-text answer and
    its log line repeat the offending line, which may hold a key; here the client gets the
    OpenAI error shape instead, and nothing it sent is echoed or logged."""

    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if isinstance(exc, LineTooLong):
            status, code = 431, "request_header_too_large"
            text = (f"a request header (or the request line) is longer than {MAX_LINE_BYTES} "
                    "bytes")
        elif status < 500:
            code, text = "invalid_http_request", "the request is not valid HTTP/1.1"
        elif status == 504:
            code, text = "gateway_timeout", "the gateway did not finish the request in time"
        else:
            status, code, text = 500, "gateway_error", "the gateway failed to handle the request"
        if status == 500:
            self.logger.error("%s %s: unhandled error", request.method, request.path,
                              exc_info=exc)
        else:
            self.logger.warning("refused a request from %s: %s (%s)", request.remote, code,
                                type(exc).__name__)
        if request.writer.output_size > 0:  # what is sent cannot be taken back
            raise ConnectionError("the response was under way; closing the connection")
        response = web.Response(status=status, body=error_body(status, text, code),
                                content_type="application/json")
        response.force_close()
        return response


class _Server(web.Server):
    def __call__(self) -> web.RequestHandler:
        return _Handler(self, loop=self._loop, **self._kwargs)


class _Runner(web.AppRunner):
    """An AppRunner whose connections are served by ``_Handler``."""

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()
        return _Server(made.request_handler, request_factory=made.request_factory,
                       handler_cancellation=made.handler_cancellation,
                       loop=asyncio.get_running_loop(), **made._kwargs)


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

