"""Reporting periods: a month, a day, or an inclusive range of days, as half-open UTC dates."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

from spendtrail.errors import SpendtrailError

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


@dataclass(frozen=True, slots=True)
class Period:
    start: date  # inclusive
    end: date  # exclusive
    label: str

    def __contains__(self, day: date) -> bool:
        return self.start <= day < self.end


def parse_period(text: str) -> Period:
    """``2026-10`` (a month), ``2026-10-05`` (a day) or ``2026-10-01..2026-10-15`` (inclusive)."""
    text = text.strip()
    try:
        if match := _MONTH.match(text):
            year, month = int(match[1]), int(match[2])
            start = date(year, month, 1)
            end = date(year + month // 12, month % 12 + 1, 1)
            return Period(start, end, text)
        if ".." in text:
            first, _, last = text.partition("..")
            start, last_day = date.fromisoformat(first), date.fromisoformat(last)
            if last_day < start:
                raise SpendtrailError(f"period {text!r}: the end is before the start")
            return Period(start, last_day + timedelta(days=1), text)
        day = date.fromisoformat(text)
        return Period(day, day + timedelta(days=1), text)
    except ValueError:
        raise SpendtrailError(
            f"period {text!r}: expected YYYY-MM, YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD"
        ) from None


def parse_day(text: str, what: str = "day") -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise SpendtrailError(f"{what} {text!r}: expected YYYY-MM-DD") from None


def month_of(day: date) -> Period:
    """The calendar month holding ``day``."""
    return parse_period(f"{day:%Y-%m}")
