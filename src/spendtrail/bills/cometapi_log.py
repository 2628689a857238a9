"""CometAPI account usage log: the CSV export (``/api/log/self/export``) and JSON log pages
(``/api/log/self``), one row per request.

Fields read (CSV columns are matched by header name, case-insensitively, in any order; extra
columns are ignored): ``created_at`` (Unix seconds, or ISO 8601 with an offset), ``type``
(0 unknown, 1 top-up, 2 consume, 3 manage, 4 system, 5 error, 6 refund), ``quota`` (integer,
500,000 quota = 1 USD), ``request_id``, ``response_id``, ``token_name`` -> key_name,
``model_name`` -> model, ``prompt_tokens``, ``completion_tokens``, ``content`` ->
description, and ``other`` (a JSON object as a string) for its cache counts.

Tokens: CometAPI follows new-api, whose ``prompt_tokens`` is OpenAI-style (cache reads
included) except on rows whose ``other`` says ``"claude": true`` or
``"usage_semantic": "anthropic"``, where it counts uncached input only and the cache counts
(``cache_tokens``, ``cache_creation_tokens`` or its ``_5m``/``_1h`` parts) are added to it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from spendtrail.bills import values
from spendtrail.bills.csvrows import csv_records
from spendtrail.bills.model import BillLine, BillRowError, ChargeKind
from spendtrail.bills.pages import json_pages
from spendtrail.bills.values import RowProblem
from spendtrail.events import EventError, Usage

QUOTA_PER_USD = 500_000
LOG_TYPES: dict[int, ChargeKind] = {
    0: "other",  # unknown
    1: "topup",
    2: "consume",
    3: "other",  # manage
    4: "other",  # system
    5: "error",
    6: "refund",
}
REQUIRED_COLUMNS = (
    "created_at", "type", "token_name", "model_name", "prompt_tokens", "completion_tokens",
    "quota", "request_id",
)
# Header spellings seen for the same fields in one-api/new-api style exports.
_ALIASES = {"model": "model_name", "token": "token_name", "time": "created_at"}
_REQUEST_SECOND = timedelta(seconds=1)


def read_cometapi_csv(path: Path) -> Iterator[BillLine | BillRowError]:
    source = str(path)
    for record in csv_records(path, _check_header):
        if isinstance(record, BillRowError):
            yield record
            continue
        fields = {column_name(name): cell for name, cell in record.cells.items()}
        yield _convert(fields, record.cells, source, record.line, "", "cometapi-csv")


def read_cometapi_json(path: Path) -> Iterator[BillLine | BillRowError]:
    """Log pages: rows under ``data`` (a list) or ``data.items``."""
    source = str(path)
    for page in json_pages(path):
        if isinstance(page, BillRowError):
            yield page
            continue
        prefix = f"{page.item}." if page.item else ""
        data = page.data.get("data")
        if isinstance(data, dict) and isinstance(data.get("items"), list):
            rows, prefix = data["items"], f"{prefix}data.items"
        elif isinstance(data, list):
            rows, prefix = data, f"{prefix}data"
        else:
            reason = "data: expected a list of log rows, or an object with 'items'"
            yield BillRowError(source, page.line, reason, page.item)
            continue
        for index, row in enumerate(rows):
            item = f"{prefix}[{index}]"
            if not isinstance(row, dict):
                reason = f"expected a log row object, got {type(row).__name__}"
                yield BillRowError(source, page.line, reason, item)
                continue
            yield _convert(row, row, source, page.line, item, "cometapi-json")


@functools.lru_cache(maxsize=512)  # called per cell; a file has only a few header names
def column_name(header: str) -> str:
    """A header as the field it names: case, spaces and hyphens ignored, aliases resolved."""
    name = header.strip().lower().replace(" ", "_").replace("-", "_")
    return _ALIASES.get(name, name)


def _check_header(header: list[str]) -> str | None:
    present = {column_name(name) for name in header}
    missing = [name for name in REQUIRED_COLUMNS if name not in present]
    if missing:
        return f"missing required column(s): {', '.join(missing)}"
    return None


def _convert(
    fields: dict[str, Any], raw: dict[str, Any], source: str, line: int, item: str, fmt: str
) -> BillLine | BillRowError:
    try:
        return _line(fields, raw, source, line, item, fmt)
    except (RowProblem, EventError) as exc:
        return BillRowError(source, line, str(exc), item)


def _line(
    fields: dict[str, Any], raw: dict[str, Any], source: str, line: int, item: str, fmt: str
) -> BillLine:
    created = values.unix_or_iso(fields.get("created_at"), "created_at")
    code = values.integer(values.required_text(fields.get("type"), "type"), "type")
    kind = LOG_TYPES.get(code)
    if kind is None:
        raise RowProblem(f"type: expected a log type 0..6, got {code}")
    quota = values.integer(values.required_text(fields.get("quota"), "quota"), "quota")
    if quota < 0:
        raise RowProblem(
            f"quota: expected a non-negative integer, got {quota} (refunds are type 6 rows)"
        )
    request_id = values.text(fields.get("request_id"))
    if kind == "consume" and request_id is None:
        raise RowProblem("request_id: missing; a consume row is matched by its request id")
    amount = Decimal(quota * 2).scaleb(-6)  # quota / 500,000 exactly
    return BillLine(
        source=source,
        line=line,
        item=item,
        format=fmt,
        provider="cometapi",
        granularity="request",
        period_start=created,
        period_end=created + _REQUEST_SECOND,
        charge_kind=kind,
        usage=_usage(fields, kind),
        amount=-amount if kind == "refund" and quota else amount,
        currency="USD",
        provider_request_id=request_id,
        response_id=values.text(fields.get("response_id")),
        key_name=values.text(fields.get("token_name")),
        model=values.text(fields.get("model_name")),
        description=values.text(fields.get("content")),
        raw=raw,
    )


def _usage(fields: dict[str, Any], kind: ChargeKind) -> Usage:
    other = values.json_object(fields.get("other"), "other")
    prompt = values.count(fields.get("prompt_tokens"), "prompt_tokens")
    read = values.count(other.get("cache_tokens"), "other.cache_tokens")
    write = values.count(other.get("cache_creation_tokens"), "other.cache_creation_tokens")
    if not write:
        write = sum(
            values.count(other.get(name), f"other.{name}")
            for name in ("cache_creation_tokens_5m", "cache_creation_tokens_1h")
        )
    anthropic = other.get("claude") is True or other.get("usage_semantic") == "anthropic"
    usage = Usage(
        input_tokens=prompt + read + write if anthropic else prompt,
        cached_input_tokens=read,
        cache_write_tokens=write,
        output_tokens=values.count(fields.get("completion_tokens"), "completion_tokens"),
        requests=1 if kind in ("consume", "error") else 0,
    )
    usage.check()
    return usage
