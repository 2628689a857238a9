"""The one normalized record every bill importer yields, and the record of a row it rejected.

Sign convention: ``amount`` is what the line adds to the bill in ``currency``. Charges are
positive; refunds and credits are negative (CometAPI refund rows carry a positive quota, so
the importer negates it; FOCUS and the OpenAI/Anthropic reports are already signed). A
``topup`` line is a balance purchase, not spend: its amount is the (positive) sum bought.
``amount`` and ``currency`` are None for usage-only reports (OpenAI/Anthropic usage).

Periods are UTC and half-open ``[period_start, period_end)``. An aggregate (``bucket``) line
spans its bucket; a per-request line spans the one second its ``created_at`` names, because
the provider stamps requests to the second and an empty interval would contain nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from spendtrail.errors import SpendtrailError
from spendtrail.events import Usage

Granularity = Literal["request", "bucket"]
ChargeKind = Literal[
    "consume", "refund", "error", "topup", "usage", "credit", "adjustment", "purchase", "tax",
    "other",
]
CHARGE_KINDS: tuple[str, ...] = ChargeKind.__args__  # type: ignore[attr-defined]


class BillFileError(SpendtrailError):
    """A bill file or mapping that cannot be read at all (missing, unknown format, bad mapping)."""


@dataclass(frozen=True, slots=True)
class BillLine:
    source: str  # the file it came from
    line: int  # CSV: the line the row starts on; JSON: the line the page starts on;
    # Parquet: the 1-based row number
    format: str
    provider: str
    granularity: Granularity
    period_start: datetime  # UTC, inclusive
    period_end: datetime  # UTC, exclusive
    charge_kind: ChargeKind
    usage: Usage | None  # None for cost-only reports (OpenAI costs, Anthropic cost, FOCUS)
    amount: Decimal | None  # see the module docstring for the sign convention
    currency: str | None  # ISO 4217, upper case; None exactly when amount is None
    raw: dict[str, Any]  # the original row, as evidence
    item: str = ""  # JSON pages: where in the page, e.g. "data[0].results[2]"
    effective_amount: Decimal | None = None  # FOCUS EffectiveCost (amortized); amount is Billed
    provider_request_id: str | None = None
    response_id: str | None = None
    key_name: str | None = None
    project: str | None = None
    model: str | None = None
    description: str | None = None
    tags: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BillRowError:
    """One row (or, when ``fatal``, the rest of the file) that could not be imported."""

    source: str
    line: int
    reason: str  # names the field and what was expected
    item: str = ""
    fatal: bool = False  # True when reading stopped here: nothing after this line was read

    def __str__(self) -> str:
        where = f"{self.item}: " if self.item else ""
        return f"{self.source}:{self.line}: {where}{self.reason}"
