"""Anthropic Admin API usage report pages (``/v1/organizations/usage_report/messages``).

Anthropic counts input in parts; spendtrail's ``input_tokens`` is their sum:
``uncached_input_tokens + cache_read_input_tokens + cache_creation.ephemeral_5m_input_tokens
+ cache_creation.ephemeral_1h_input_tokens``; cache reads -> cached_input_tokens, both cache
write TTLs -> cache_write_tokens, the 1-hour ones also -> cache_write_1h_tokens.
``output_tokens`` as is. The report counts no requests, so ``usage.requests`` is 0 (web
search requests stay in ``raw``). Group keys: ``api_key_id`` -> key_name, ``workspace_id``
-> project (None is the default workspace), ``model``. Period: ``starting_at``/``ending_at``
(RFC 3339). Usage only: ``amount`` and ``currency`` are None.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from spendtrail.bills import values
from spendtrail.bills.model import BillLine, BillRowError
from spendtrail.bills.pages import BucketRow, bucket_lines
from spendtrail.bills.values import RowProblem
from spendtrail.events import Usage

FORMAT = "anthropic-usage"


def anthropic_period(bucket: dict[str, Any]) -> tuple[datetime, datetime]:
    return (
        values.iso(bucket.get("starting_at"), "starting_at"),
        values.iso(bucket.get("ending_at"), "ending_at"),
    )


def read_anthropic_usage(path: Path) -> Iterator[BillLine | BillRowError]:
    return bucket_lines(path, anthropic_period, _line)


def _line(row: BucketRow) -> BillLine:
    result = row.result
    for name in ("uncached_input_tokens", "output_tokens"):
        if result.get(name) is None:
            raise RowProblem(f"{name}: missing; expected a token count")
    creation = result.get("cache_creation") or {}
    if not isinstance(creation, dict):
        raise RowProblem("cache_creation: expected an object of token counts")
    uncached = values.count(result["uncached_input_tokens"], "uncached_input_tokens")
    read = values.count(result.get("cache_read_input_tokens"), "cache_read_input_tokens")
    five, hour = (
        values.count(creation.get(ttl), f"cache_creation.{ttl}")
        for ttl in ("ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens")
    )
    usage = Usage(
        input_tokens=uncached + read + five + hour,
        cached_input_tokens=read,
        cache_write_tokens=five + hour,
        cache_write_1h_tokens=hour,
        output_tokens=values.count(result["output_tokens"], "output_tokens"),
    )
    return row.usage_line(
        FORMAT, "anthropic",
        usage=usage,
        key_name=values.text(result.get("api_key_id")),
        project=values.text(result.get("workspace_id")),
        model=values.text(result.get("model")),
    )
