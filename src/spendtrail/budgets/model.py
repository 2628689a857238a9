"""A budget: a limit on one owner's spend (money or tokens) per accounting period.

Periods are UTC calendar units, because the ledger's daily rollups that spend is read from
are UTC days: a month, an ISO week (Monday to Sunday), a day, or a custom range of whole days.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Literal, get_args

from spendtrail.errors import SpendtrailError
from spendtrail.money import MoneyError, format_amount, from_pico, parse_decimal, to_pico
from spendtrail.registry import Allocation

Scope = Literal["application", "cost_center", "business_unit", "budget_owner"]
PeriodKind = Literal["month", "week", "day", "custom"]
SCOPES: tuple[str, ...] = get_args(Scope)
PERIOD_KINDS: tuple[str, ...] = get_args(PeriodKind)

# Ids appear in response headers (`id=82%;soft`) and Redis keys, so no separators in them.
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# Usage that the registry could not attribute is not any team's spend (docs/budgets.md).
COUNTED_STATUSES = ("allocated", "shared")


class BudgetError(SpendtrailError):
    """A budget definition that cannot be used."""


@dataclass(frozen=True, slots=True)
class BudgetPeriod:
    start: date  # inclusive
    end: date  # exclusive
    label: str

    @property
    def ends_at(self) -> datetime:
        return datetime.combine(self.end, time(), UTC)


@dataclass(frozen=True, slots=True)
class Budget:
    id: str
    scope: Scope
    scope_value: str
    period: PeriodKind
    # Pico-units of `currency`, or tokens (input + output) when `currency` is None.
    limit_units: int
    currency: str | None = None
    thresholds: tuple[int, ...] = ()  # soft thresholds, percent of the limit, ascending
    hard_limit: bool = True
    environment: str | None = None
    custom_start: date | None = None
    custom_end: date | None = None  # exclusive
    owner: str | None = None
    notes: str | None = None

    def __post_init__(self) -> None:
        if not _ID.match(self.id):
            raise BudgetError(
                f"budget id {self.id!r}: expected 1-100 letters, digits, '.', '_' or '-'"
            )
        if self.scope not in SCOPES:
            raise BudgetError(f"scope {self.scope!r}: expected one of {', '.join(SCOPES)}")
        if not self.scope_value:
            raise BudgetError("scope value: expected an id from the registry")
        if self.period not in PERIOD_KINDS:
            raise BudgetError(f"period {self.period!r}: expected one of {', '.join(PERIOD_KINDS)}")
        custom = self.custom_start is not None or self.custom_end is not None
        if self.period == "custom":
            if self.custom_start is None or self.custom_end is None:
                raise BudgetError("a custom period needs a start and an end day")
            if self.custom_end <= self.custom_start:
                raise BudgetError("custom period: the end is not after the start")
        elif custom:
            raise BudgetError(f"a {self.period} period takes no start or end day")
        if self.limit_units <= 0:
            raise BudgetError("limit: expected a positive amount")
        if self.currency is not None and not re.fullmatch(r"[A-Z]{3}", self.currency):
            raise BudgetError(f"currency {self.currency!r}: expected a 3-letter ISO 4217 code")
        if any(not 0 < t <= 100 for t in self.thresholds) or list(self.thresholds) != sorted(
            set(self.thresholds)
        ):
            raise BudgetError(
                f"soft thresholds {list(self.thresholds)}: expected distinct ascending "
                "percentages from 1 to 100"
            )

    @property
    def unit(self) -> str:
        return self.currency or "tokens"

    @property
    def counter_id(self) -> str:
        """Names the budget's counters. A change to what the budget counts (owner,
        environment, unit) starts new ones, so a counter never mixes money with tokens or
        one owner's spend with another's; a change of limit or thresholds keeps them."""
        counted = "|".join(
            (self.scope, self.scope_value, self.environment or "", self.currency or "tokens")
        )
        return f"{self.id}:{hashlib.sha256(counted.encode()).hexdigest()[:8]}"

    @property
    def limit(self) -> Decimal | int:
        return from_pico(self.limit_units) if self.currency else self.limit_units

    def format_units(self, units: int) -> str:
        if self.currency:
            return f"{format_amount(from_pico(units))} {self.currency}"
        return f"{units:,} tokens"

    def describe_scope(self) -> str:
        text = f"{self.scope}={self.scope_value}"
        return f"{text}, environment={self.environment}" if self.environment else text

    def matches(self, allocation: Allocation) -> bool:
        """Whether a call with this allocation counts against the budget. An allocation
        without an environment (a key-proven owner whose claimed environment is not one it
        may use) counts against the owner's budgets of every environment."""
        if allocation.status not in COUNTED_STATUSES:
            return False
        if self.environment is not None and allocation.environment not in (
                None, self.environment):
            return False
        return getattr(allocation, self.scope) == self.scope_value

    def period_at(self, at: datetime) -> BudgetPeriod | None:
        """The period containing `at`, or None outside a custom period."""
        if at.tzinfo is None:
            raise ValueError(f"timestamp must carry a UTC offset, got {at.isoformat()}")
        day = at.astimezone(UTC).date()
        if self.period == "month":
            start = day.replace(day=1)
            end = date(start.year + start.month // 12, start.month % 12 + 1, 1)
            return BudgetPeriod(start, end, f"{start:%Y-%m}")
        if self.period == "week":
            start = day - timedelta(days=day.weekday())
            year, week, _ = start.isocalendar()
            return BudgetPeriod(start, start + timedelta(days=7), f"{year}-W{week:02d}")
        if self.period == "day":
            return BudgetPeriod(day, day + timedelta(days=1), day.isoformat())
        assert self.custom_start is not None and self.custom_end is not None
        if not self.custom_start <= day < self.custom_end:
            return None
        last = self.custom_end - timedelta(days=1)
        return BudgetPeriod(self.custom_start, self.custom_end, f"{self.custom_start}..{last}")

    def to_record(self) -> dict[str, object]:
        """The stored and audited form: the same keys as the `budgets` columns."""
        return {
            "id": self.id,
            "scope": self.scope,
            "scope_value": self.scope_value,
            "environment": self.environment,
            "period": self.period,
            "custom_start": self.custom_start,
            "custom_end": self.custom_end,
            "currency": self.currency,
            "limit_units": self.limit_units,
            "thresholds": ",".join(str(t) for t in self.thresholds),
            "hard_limit": self.hard_limit,
            "owner": self.owner,
            "notes": self.notes,
        }

    @classmethod
    def from_record(cls, record: dict[str, object]) -> Budget:
        values = {name: record[name] for name in cls.__dataclass_fields__}
        text = str(values["thresholds"] or "")
        values["thresholds"] = tuple(int(t) for t in text.split(",")) if text else ()
        values["hard_limit"] = bool(values["hard_limit"])
        return cls(**values)  # type: ignore[arg-type]


def parse_limit(text: str) -> tuple[int, str | None]:
    """``500 USD`` -> (pico-units, "USD"); ``2000000 tokens`` -> (tokens, None). Exact: an
    amount finer than a pico-unit, or a fraction of a token, is refused, never rounded."""
    amount, _, unit = text.strip().partition(" ")
    unit = unit.strip()
    try:
        value = parse_decimal(amount, field="limit")
        if unit == "tokens":
            if value != value.to_integral_value():
                raise BudgetError(f"limit {text!r}: a token limit is a whole number")
            return int(value), None
        if re.fullmatch(r"[A-Z]{3}", unit):
            return to_pico(value), unit
    except MoneyError as exc:
        raise BudgetError(f"limit {text!r}: {exc}") from None
    raise BudgetError(
        f"limit {text!r}: expected an amount and a currency (500 USD) or a token count "
        "(2000000 tokens)"
    )


def parse_thresholds(text: str) -> tuple[int, ...]:
    """``50,80`` -> (50, 80); ``none`` or empty -> no soft thresholds."""
    text = text.strip().replace("%", "")
    if text in ("", "none"):
        return ()
    try:
        return tuple(sorted(int(part) for part in text.split(",")))
    except ValueError:
        raise BudgetError(
            f"soft thresholds {text!r}: expected whole percentages separated by commas (50,80)"
        ) from None
