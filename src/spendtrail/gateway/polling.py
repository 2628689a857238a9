"""Busy polling: the gateway's event loop looks for ready sockets for a moment before it
sleeps, while waits have been short.

Why: a sleeping core halts, and on a virtual machine waking it again costs tens to hundreds of
microseconds (an exit to the hypervisor, then cold caches). At concurrency 1 the gateway
sleeps twice a call, while the provider answers and while the client reads, and those
wake-ups were 0.2 ms of the 0.5 ms it added to a call (docs/benchmarks.md, "Gateway").
A guest kernel's halt-polling (``cpuidle-haltpoll``) does the same below us where it is
enabled; the machines measured had it off (``guest_halt_poll_ns`` 0).

Adaptive, as halt-polling is: the loop polls only after a wait that polling would have
caught (over within the window); one poll that catches nothing stops it until the next
short wait. A gateway waiting on a provider that takes seconds, or on no traffic at all,
so never polls; a busy one rarely waits. The cost is at most one window of CPU per wait
that ends polling.
"""

from __future__ import annotations

import selectors
import time

DEFAULT_WINDOW_US = 200  # halt-polling's default (guest_halt_poll_ns=200000)


class BusyPollSelector(selectors.DefaultSelector):
    """The platform's selector, polling for up to `window` seconds before a blocking wait."""

    def __init__(self, window: float) -> None:
        super().__init__()
        self.window = window
        self._polling = False

    @property
    def polling(self) -> bool:
        """Whether the next wait starts by polling: the last one was short enough."""
        return self._polling

    def select(self, timeout: float | None = None) -> list:
        if timeout is not None and timeout <= 0:
            return super().select(0)
        start = time.perf_counter()
        if self._polling:
            polled = self.window if timeout is None else min(self.window, timeout)
            end = start + polled
            while True:
                if ready := super().select(0):
                    return ready
                if time.perf_counter() >= end:
                    break
            if polled < self.window:  # a timer is due: the loop has work, not a long wait
                return []
            self._polling = False
            return super().select(None if timeout is None else timeout - polled)
        ready = super().select(timeout)
        self._polling = bool(ready) and time.perf_counter() - start <= self.window
        return ready
