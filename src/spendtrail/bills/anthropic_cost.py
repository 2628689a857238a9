"""Anthropic Admin API cost report pages (``/v1/organizations/cost_report``), daily buckets.

``amount`` is a decimal *string in cents* (the lowest currency unit): "123.45" is 1.2345 USD;
it is shifted two places exactly (``Decimal.scaleb(-2)``), never divided through float.
``currency`` (always "USD" today) is checked as ISO 4217. ``workspace_id`` -> project,
``description`` and ``model`` as is; ``cost_type``, ``token_type``, ``service_tier`` and
``context_window`` stay in ``raw``. Every cost type (tokens, web_search, code_execution,
session_usage) is ``usage``. The report has no token meters, so ``usage`` is None.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from spendtrail.bills import values
from spendtrail.bills.anthropic_usage import anthropic_period
from spendtrail.bills.model import BillLine, BillRowError
from spendtrail.bills.pages import BucketRow, bucket_lines

FORMAT = "anthropic-cost"


def read_anthropic_cost(path: Path) -> Iterator[BillLine | BillRowError]:
    return bucket_lines(path, anthropic_period, _line)


def _line(row: BucketRow) -> BillLine:
    result = row.result
    cents = values.decimal(result.get("amount"), "amount")
    return row.usage_line(
        FORMAT, "anthropic",
        amount=cents.scaleb(-2),
        currency=values.currency(result.get("currency"), "currency"),
        project=values.text(result.get("workspace_id")),
        model=values.text(result.get("model")),
        description=values.text(result.get("description")),
    )
