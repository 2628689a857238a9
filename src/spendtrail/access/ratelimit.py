"""Login attempts per key (a user name, a client address) in a sliding window: after
``limit`` failures within ``window`` seconds, further attempts are refused until the oldest
failure leaves the window. The caller supplies the clock, so the rule is testable."""

from __future__ import annotations

from collections import deque
from threading import Lock


class LoginLimiter:
    def __init__(self, limit: int = 5, window: float = 300.0) -> None:
        self.limit, self.window = limit, window
        self._failures: dict[str, deque[float]] = {}
        self._lock = Lock()

    def retry_after(self, keys: list[str], now: float) -> float:
        """Seconds until an attempt for these keys is allowed again; 0 when it is."""
        with self._lock:
            wait = 0.0
            for key in keys:
                failures = self._prune(key, now)
                if len(failures) >= self.limit:
                    wait = max(wait, failures[0] + self.window - now)
                elif not failures:
                    del self._failures[key]  # keys seen once are not kept for ever
            return wait

    def failed(self, keys: list[str], now: float) -> None:
        with self._lock:
            for key in keys:
                self._prune(key, now).append(now)

    def _prune(self, key: str, now: float) -> deque[float]:
        failures = self._failures.setdefault(key, deque())
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        return failures
