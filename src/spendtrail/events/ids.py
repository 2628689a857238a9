"""UUIDv7 event ids: time-ordered, so ledger inserts stay append-friendly in B-tree indexes."""

from __future__ import annotations

import os
import time
import uuid


def new_event_id() -> str:
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & (2**48 - 1)) << 80 | 0x7 << 76 | (rand >> 68 & 0xFFF) << 64
    value |= 0b10 << 62 | rand & (2**62 - 1)
    return str(uuid.UUID(int=value))
