"""Linking attempts into logical requests, so retries are counted apart from calls.

- With an ``Idempotency-Key`` header the request id is derived from it (scoped to the
  gateway key): every attempt carrying it, on any replica, gets the same id.
- Otherwise the openai SDK's ``x-stainless-retry-count`` says which attempt this is. A
  first attempt (count 0 or no header) starts a new request whose id is its own event id;
  a retry (count > 0) joins the latest request this replica saw with the same fingerprint
  (gateway key, method, path and body bytes, which the SDK resends unchanged). A retry whose
  first attempt this replica never saw (after a restart, or on another replica) gets an id
  derived from the fingerprint, so its own retries still group together.

The attempt number is the retry count + 1; without that header, attempts seen here with the
same idempotency key are counted.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict

IDEMPOTENCY_HEADER = "Idempotency-Key"
RETRY_HEADER = "x-stainless-retry-count"


class RetryLinker:
    def __init__(self, *, max_entries: int = 100_000, ttl_seconds: float = 900.0) -> None:
        self.max_entries = max_entries
        self.ttl = ttl_seconds
        self._slots: OrderedDict[str, tuple[str, int, float]] = OrderedDict()

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
        """(request id, attempt number) of one attempt."""
        now = time.monotonic()
        if idempotency_key:
            slot = hashlib.sha256(f"{key_id}\n{idempotency_key}".encode()).hexdigest()[:32]
            request_id = "ik-" + slot
        else:
            digest = hashlib.blake2b(digest_size=16)
            for part in (key_id.encode(), method.encode(), path.encode()):
                digest.update(part)
                digest.update(b"\0")
            digest.update(body)
            slot = digest.hexdigest()
            request_id = event_id if not retry_count else self._known(slot, now, "fp-" + slot)
        seen = self._seen(slot, now) if idempotency_key else 0
        self._slots[slot] = (request_id, seen + 1, now)
        self._slots.move_to_end(slot)
        if len(self._slots) > self.max_entries:
            self._slots.popitem(last=False)
        attempt = retry_count + 1 if retry_count is not None else seen + 1
        return request_id, attempt

    def _entry(self, slot: str, now: float) -> tuple[str, int, float] | None:
        entry = self._slots.get(slot)
        if entry is not None and now - entry[2] > self.ttl:
            del self._slots[slot]
            return None
        return entry

    def _known(self, slot: str, now: float, fallback: str) -> str:
        entry = self._entry(slot, now)
        return entry[0] if entry is not None else fallback

    def _seen(self, slot: str, now: float) -> int:
        entry = self._entry(slot, now)
        return entry[1] if entry is not None else 0


def retry_count(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        count = int(value)
    except ValueError:
        return None
    return count if 0 <= count < 1000 else None
