"""Client threads that call a gateway for as long as a ``with`` block lasts."""

from __future__ import annotations

import threading
from typing import Self


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
