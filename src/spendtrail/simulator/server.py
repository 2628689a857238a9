"""Running the simulator: in the foreground until interrupted, or in a thread for tests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from aiohttp import web

from spendtrail.foreground import run_until_signalled
from spendtrail.simulator.app import make_app
from spendtrail.simulator.config import SimulatorConfig

# In-flight calls get this long to finish on shutdown; a held "timeout" call is not waited for.
SHUTDOWN_GRACE_S = 1.0


def base_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}/v1" if ":" in host else f"http://{host}:{port}/v1"


async def serve(
    config: SimulatorConfig, host: str, port: int, stop: asyncio.Event,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until ``stop`` is set; ``on_ready`` gets the base URL once the port is bound (port
    0 picks a free one)."""
    runner = web.AppRunner(make_app(config), access_log=None, shutdown_timeout=SHUTDOWN_GRACE_S)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, backlog=1024).start()
        if on_ready is not None:
            on_ready(base_url(host, runner.addresses[0][1]))
        await stop.wait()
    finally:
        await runner.cleanup()


def run_simulator(
    config: SimulatorConfig, host: str = "127.0.0.1", port: int = 8090, *,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve in the foreground until SIGINT or SIGTERM, then close the usage log cleanly."""
    run_until_signalled(lambda stop: serve(config, host, port, stop, on_ready))


@contextmanager
def serve_in_thread(
    config: SimulatorConfig, host: str = "127.0.0.1", port: int = 0
) -> Iterator[str]:
    """Run the simulator on its own event loop in a daemon thread; yields its base URL
    (``http://127.0.0.1:PORT/v1``) and stops it on exit."""
    ready = threading.Event()
    state: dict[str, Any] = {}

    def on_ready(url: str) -> None:
        state["url"] = url
        ready.set()

    async def main() -> None:
        state["loop"], state["stop"] = asyncio.get_running_loop(), asyncio.Event()
        await serve(config, host, port, state["stop"], on_ready)

    def target() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # handed to the caller's thread
            state["error"] = exc
        finally:
            ready.set()

    thread = threading.Thread(target=target, name="spendtrail-simulator", daemon=True)
    thread.start()
    ready.wait()
    if "error" in state:
        thread.join()
        raise state["error"]
    try:
        yield state["url"]
    finally:
        state["loop"].call_soon_threadsafe(state["stop"].set)
        thread.join()
