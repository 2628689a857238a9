"""Running a server in the foreground until SIGINT or SIGTERM: the simulator and the OTLP
receiver stop the same way (the gateway drains its calls first: gateway/app.py)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from contextlib import suppress


def run_until_signalled(serve: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``serve(stop)``; SIGINT or SIGTERM sets ``stop``, whatever their disposition."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with suppress(NotImplementedError, RuntimeError):  # no signals off Unix/main thread
                loop.add_signal_handler(sig, stop.set)
        await serve(stop)

    asyncio.run(main())
