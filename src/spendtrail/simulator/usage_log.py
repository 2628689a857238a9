"""The provider-side usage log in CometAPI's format, and how the simulator bills a call.

Quota follows one-api/new-api, which CometAPI's account API mirrors: 500,000 quota = 1 USD.
A token-priced call costs (uncached prompt x input + cached x cached_input + completion x
output) / 1M USD; a per-call price is charged per call (per image). The USD amount is exact
Decimal; the quota is rounded half up to a whole unit, and a call with a positive cost never
bills 0 (one-api bills at least 1 unit). Error rows (type 5) bill 0.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from io import StringIO
from pathlib import Path
from typing import IO, Any

import msgspec

from spendtrail.simulator.config import ModelPrice, SimulatorConfigError
from spendtrail.simulator.usage import TokenUsage

QUOTA_PER_USD = 500_000
TOKENS_PER_PRICE_UNIT = 1_000_000  # prices are quoted per 1M tokens
# one-api's ratio 1 means USD 0.002 per 1K tokens = USD 2 per 1M tokens.
USD_PER_1M_AT_RATIO_1 = Decimal(2)
LOG_CONSUME = 2
LOG_ERROR = 5
CSV_HEADER = (
    "created_at", "type", "token_name", "model_name", "prompt_tokens", "completion_tokens",
    "quota", "is_stream", "request_id", "group",
)
_other_encoder = msgspec.json.Encoder(decimal_format="number")


def usd_cost(price: ModelPrice, usage: TokenUsage, calls: int = 1) -> Decimal:
    if price.per_call is not None:
        return price.per_call * calls
    uncached = usage.prompt_tokens - usage.cached_tokens
    tokens_cost = (
        uncached * price.input
        + usage.cached_tokens * price.cached_rate
        + usage.completion_tokens * price.output
    )
    return tokens_cost / TOKENS_PER_PRICE_UNIT


def quota_for(price: ModelPrice, usage: TokenUsage, calls: int = 1) -> int:
    """Integer quota units for a call: see the module docstring for the rounding."""
    exact = usd_cost(price, usage, calls) * QUOTA_PER_USD
    quota = int(exact.to_integral_value(ROUND_HALF_UP))
    return 1 if quota == 0 and exact > 0 else quota


@dataclass(frozen=True, slots=True)
class LogRow:
    created_at: int
    type: int
    token_name: str
    model_name: str
    prompt_tokens: int
    completion_tokens: int
    quota: int
    is_stream: bool
    request_id: str
    group: str
    # Only the JSON log pages show these.
    use_time: int = 0
    response_id: str = ""
    content: str = ""
    request_path: str = ""
    price: ModelPrice | None = None
    cache_tokens: int = 0
    frt_ms: int = -1
    total_ms: int = 0

    def csv_fields(self) -> tuple[object, ...]:
        return (
            self.created_at, self.type, self.token_name, self.model_name, self.prompt_tokens,
            self.completion_tokens, self.quota, "true" if self.is_stream else "false",
            self.request_id, self.group,
        )

    def api_item(self, row_id: int) -> dict[str, Any]:
        """The row as ``/api/log/self`` shows it, with ``other`` as a JSON-encoded string."""
        other: dict[str, Any] = {
            "group_ratio": 1, "cache_tokens": self.cache_tokens, "frt": self.frt_ms,
            "total_ms": self.total_ms, "request_path": self.request_path,
        }
        price = self.price
        if price is not None and price.per_call is not None:
            other |= {"model_price": price.per_call, "model_ratio": 0, "completion_ratio": 1}
        elif price is not None:
            base = price.input
            other |= {
                "model_price": -1,
                "model_ratio": base / USD_PER_1M_AT_RATIO_1,
                "completion_ratio": price.output / base if base else 0,
                "cache_ratio": price.cached_rate / base if base else 1,
            }
        return {
            "id": row_id, "created_at": self.created_at, "type": self.type,
            "content": self.content, "username": "simulator", "token_name": self.token_name,
            "model_name": self.model_name, "quota": self.quota,
            "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
            "use_time": self.use_time, "is_stream": self.is_stream, "group": self.group,
            "request_id": self.request_id, "response_id": self.response_id,
            "other": _other_encoder.encode(other).decode(),
        }


class UsageLog:
    """Appends rows to a CSV file, flushed per row so another process can read it live, and
    keeps them in memory when the JSON log pages are on."""

    def __init__(self, path: Path | None, *, keep: bool) -> None:
        self.rows: list[LogRow] | None = [] if keep else None
        self._file: IO[str] | None = None
        if path is None:
            return
        try:
            with_header = not path.exists() or path.stat().st_size == 0
            if not with_header:
                with path.open(encoding="utf-8", newline="") as existing:
                    first = next(csv.reader(existing), [])
                if tuple(first) != CSV_HEADER:
                    raise SimulatorConfigError(
                        f"{path}: exists with header {','.join(first)!r}, expected "
                        f"{','.join(CSV_HEADER)!r}; choose another usage log file"
                    )
            self._file = path.open("a", encoding="utf-8", newline="")
        except OSError as exc:
            message = f"{path}: cannot open the usage log: {exc.strerror}"
            raise SimulatorConfigError(message) from None
        self._writer = csv.writer(self._file, lineterminator="\n")
        if with_header:
            self._writer.writerow(CSV_HEADER)
            self._file.flush()

    def append(self, row: LogRow) -> None:
        if self._file is not None:
            self._writer.writerow(row.csv_fields())
            self._file.flush()
        if self.rows is not None:
            self.rows.append(row)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


_INT_FILTERS = ("type", "start_timestamp", "end_timestamp")
_TEXT_FILTERS = ("model_name", "token_name", "group", "request_id")


def select_rows(rows: list[LogRow], query: Mapping[str, str]) -> list[tuple[int, LogRow]]:
    """Rows (1-based id, row) matching ``/api/log/self`` filters; raises ValueError naming a
    filter that is not an integer where one is expected."""
    bounds: dict[str, int] = {}
    for name in _INT_FILTERS:
        if query.get(name):
            try:
                bounds[name] = int(query[name])
            except ValueError:
                raise ValueError(f"{name}: expected an integer, got {query[name]!r}") from None
    texts = {name: query[name] for name in _TEXT_FILTERS if query.get(name)}
    found = []
    for row_id, row in enumerate(rows, 1):
        if "type" in bounds and row.type != bounds["type"]:
            continue
        if row.created_at < bounds.get("start_timestamp", row.created_at):
            continue
        if row.created_at > bounds.get("end_timestamp", row.created_at):
            continue
        if any(getattr(row, name) != value for name, value in texts.items()):
            continue
        found.append((row_id, row))
    return found


def rows_csv(rows: list[tuple[int, LogRow]]) -> str:
    out = StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    writer.writerows(row.csv_fields() for _, row in rows)
    return out.getvalue()
