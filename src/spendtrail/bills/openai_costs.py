"""OpenAI organization Costs API pages (``GET /v1/organization/costs``), daily buckets.

Read per result: ``amount.value`` (a JSON number in currency units, decoded as Decimal, never
float), ``amount.currency`` (lower case ISO 4217, upper-cased), ``line_item`` -> description,
``project_id`` -> project. The bucket's ``start_time``/``end_time`` (Unix seconds, end
exclusive) are the period. The report has no token meters, so ``usage`` is None.
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

FORMAT = "openai-costs"


def openai_period(bucket: dict[str, Any]) -> tuple[datetime, datetime]:
    return (
        values.unix_or_iso(bucket.get("start_time"), "start_time"),
        values.unix_or_iso(bucket.get("end_time"), "end_time"),
    )


def read_openai_costs(path: Path) -> Iterator[BillLine | BillRowError]:
    return bucket_lines(path, openai_period, _line)


def _line(row: BucketRow) -> BillLine:
    result = row.result
    amount = result.get("amount")
    if not isinstance(amount, dict):
        raise RowProblem("amount: expected an object with value and currency")
    return row.usage_line(
        FORMAT, "openai",
        amount=values.decimal(amount.get("value"), "amount.value"),
        currency=values.currency(amount.get("currency"), "amount.currency"),
        project=values.text(result.get("project_id")),
        description=values.text(result.get("line_item")),
    )
