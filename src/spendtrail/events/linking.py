"""Linking attempts into logical requests, so retries are counted apart from calls.

- With an ``Idempotency-Key`` header the request id is derived from it (scoped to the
  gateway key): every attempt carrying it, on any replica, gets the same id.
- Otherwise the openai SDK says only which attempt this is (``x-stainless-retry-count``); it
  resends the same body, and nothing in the request tells two identical calls apart. So a
  first attempt (count 0 or no header) opens a new request whose id is its own event id, and
  a retry with count n joins the oldest request with the same fingerprint (gateway key,
  method, path and body bytes) that has exactly n attempts and whose last attempt did not
  end in a way the SDK never retries (a success or a 4xx other than 408, 409 and 429).
  Requests that have already failed are preferred to ones still in flight (a client timeout).
  Two concurrent identical calls that both fail and retry therefore stay two requests of two
  attempts each; which retry joins which does not matter, as their owner, key and body are
  the same. A retry that matches no open request (its first attempt was seen by another
  replica, or before a restart) opens a request of its own with its attempt number: two
  different calls are never merged.

The attempt number is the retry count + 1; without that header, attempts seen here with the
same idempotency key are counted.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass

IDEMPOTENCY_HEADER = "Idempotency-Key"
RETRY_HEADER = "x-stainless-retry-count"


def retryable(status: int | None) -> bool:
    """Whether the openai SDK retries an attempt that ended so (None: no response at all)."""
    return status is None or status in (408, 409, 429) or status >= 500


@dataclass(slots=True)
class _Request:
    request_id: str
    attempts: int  # attempts linked so far
    in_flight: int  # attempts linked and not settled
    touched: float
    keyed: bool  # named by an idempotency key: open until its key expires, whatever happens


class RetryLinker:
    def __init__(self, *, max_entries: int = 100_000, ttl_seconds: float = 900.0) -> None:
        self.max_entries = max_entries
        self.ttl = ttl_seconds
        # slot (idempotency slot or fingerprint) -> its open requests, oldest first
        self._slots: OrderedDict[str, list[_Request]] = OrderedDict()
        self._open: dict[str, tuple[str, _Request]] = {}  # request id -> (slot, request)
        self._size = 0

    def link(
        self,
        *,
        key_id: str,
        idempotency_key: str | None,
        retry_count: int | None,
        method: str,
        path: str,
        body: bytes,
        event_id: str,
    ) -> tuple[str, int]:
        """(request id, attempt number) of one attempt; `settle` it once it has ended."""
        now = time.monotonic()
        if idempotency_key:
            slot = hashlib.sha256(f"{key_id}\n{idempotency_key}".encode()).hexdigest()[:32]
            requests = self._requests(slot, now)
            request = requests[0] if requests else self._add(slot, "ik-" + slot, 0, now, True)
            request.attempts = retry_count + 1 if retry_count is not None else request.attempts + 1
        else:
            digest = hashlib.blake2b(digest_size=16)
            for part in (key_id.encode(), method.encode(), path.encode()):
                digest.update(part)
                digest.update(b"\0")
            digest.update(body)
            slot = digest.hexdigest()
            request = self._retry_of(slot, retry_count, now) if retry_count else None
            if request is None:  # a first attempt, or a retry whose request is not open here
                request = self._add(slot, event_id, retry_count or 0, now, False)
            request.attempts += 1
        request.in_flight += 1
        request.touched = now
        self._slots.move_to_end(slot)
        return request.request_id, request.attempts

    def settle(self, request_id: str, status: int | None) -> None:
        """An attempt of `request_id` ended with `status` (None: no response). A request the
        client will not retry closes; one it may retry stays open for its next attempt."""
        found = self._open.get(request_id)
        if found is None:
            return
        slot, request = found
        request.in_flight = max(0, request.in_flight - 1)
        if not (request.keyed or retryable(status)):
            self._close(slot, request)

    def _retry_of(self, slot: str, retry_count: int, now: float) -> _Request | None:
        waiting = [r for r in self._requests(slot, now) if r.attempts == retry_count]
        settled = [r for r in waiting if r.in_flight == 0]
        return (settled or waiting or [None])[0]

    def _requests(self, slot: str, now: float) -> list[_Request]:
        requests = self._slots.get(slot, [])
        for request in [r for r in requests if now - r.touched > self.ttl]:
            self._close(slot, request)
        return self._slots.get(slot, [])

    def _add(
        self, slot: str, request_id: str, attempts: int, now: float, keyed: bool
    ) -> _Request:
        request = _Request(request_id, attempts, 0, now, keyed)
        self._slots.setdefault(slot, []).append(request)
        self._open[request_id] = (slot, request)
        self._size += 1
        while self._size > self.max_entries:
            oldest = next(iter(self._slots))
            self._close(oldest, self._slots[oldest][0])
        return request

    def _close(self, slot: str, request: _Request) -> None:
        requests = self._slots[slot]
        requests.remove(request)
        if not requests:
            del self._slots[slot]
        if self._open.get(request.request_id, (None, None))[1] is request:
            del self._open[request.request_id]
        self._size -= 1


def retry_count(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        count = int(value)
    except ValueError:
        return None
    return count if 0 <= count < 1000 else None
