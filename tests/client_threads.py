"""Client threads that call a gateway for as long as a ``with`` block lasts."""

from __future__ import annotations

import threading
import time
from typing import Self

import openai


class ClientThreads:
    """`threads` threads, each running ``_run(base_url, key, n)`` (n: its number) from the
    start of the ``with`` block; ``_run`` loops until ``_stop`` is set, at the block's end."""

    def __init__(self, base_url: str, key: str, threads: int) -> None:
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(base_url, key, n)) for n in range(threads)
        ]

    def _run(self, base_url: str, key: str, n: int) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)


class ChatLoad(ClientThreads):
    """Client threads sending chat completions through the openai SDK, each its own client
    (its own connections); keeps what each complete response said, counts the failed calls
    and carries on after them."""

    def __init__(
        self,
        base_url: str,
        key: str,
        threads: int = 4,
        headers: dict[str, str] | None = None,
        timeout: float = 10,
    ) -> None:
        self.received: list[tuple[str, str]] = []  # (event id, provider request id)
        self.failures = 0
        self._headers = headers or {}
        self._timeout = timeout
        self._lock = threading.Lock()
        super().__init__(base_url, key, threads)

    def _run(self, base_url: str, key: str, n: int) -> None:
        client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=self._timeout)
        i = 0
        while not self._stop.is_set():
            i += 1
            try:
                raw = client.chat.completions.with_raw_response.create(
                    model="gpt-4o-mini",
                    messages=[{"role": "user", "content": f"q {n} {i}"}],
                    extra_headers=self._headers,
                )
                raw.parse()  # the whole body, last byte included, has arrived
                pair = (raw.headers["X-Spendtrail-Event-Id"], raw.headers["X-Oneapi-Request-Id"])
                with self._lock:
                    self.received.append(pair)
            except (openai.APIConnectionError, openai.APIStatusError):
                with self._lock:
                    self.failures += 1
                time.sleep(0.01)

    def count(self) -> int:
        with self._lock:
            return len(self.received)

    def event_ids(self) -> set[str]:
        with self._lock:
            return {event_id for event_id, _ in self.received}

    def wait_for(self, more: int, timeout: float = 60) -> None:
        target = self.count() + more
        deadline = time.monotonic() + timeout
        while self.count() < target:
            assert time.monotonic() < deadline, "the load made no progress"
            time.sleep(0.02)
