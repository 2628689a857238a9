"""The alert rules that are arithmetic, pure: values in, a finding or None out.

- **Forecast**: linear on the period's completed days. Spend on the days before today,
  divided by their number, times the days in the period. Today is left out (it is not over,
  so it would pull the rate down); a forecast needs ``forecast_min_days`` completed days.
- **Spend anomaly**: an owner's day against its own baseline, the median of its daily spend
  on the ``baseline_days`` days before it (days without spend count as 0). The median, not
  the mean, so one earlier spike does not raise the bar. The day is anomalous when it is at
  least ``anomaly_factor`` times the baseline **and** at least ``anomaly_min_increase`` (in
  the day's currency) above it, so a few cents over a near-zero baseline do not page anyone.
  An owner with spend on fewer than ``anomaly_min_history_days`` of those days has no
  baseline yet, and no anomaly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction

from spendtrail.money import to_pico


@dataclass(frozen=True, slots=True)
class Rules:
    """The thresholds of every kind; defaults are documented in docs/alerts.md."""

    lookback_days: int = 7  # how old a recorded event (a crossing, a failed run) may be
    forecast_min_days: int = 3
    anomaly_factor: Decimal = Decimal(3)
    anomaly_min_increase: Decimal = Decimal(1)
    baseline_days: int = 14
    anomaly_min_history_days: int = 7
    unallocated_threshold: Fraction = Fraction(5, 100)
    price_cadence_days: int = 30


@dataclass(frozen=True, slots=True)
class Forecast:
    at_end: int  # spend forecast for the whole period, in the budget's units
    crossing: date  # the day spend is forecast to pass the limit


def forecast(
    spent: int, start: date, days_done: int, days_total: int, limit: int
) -> Forecast | None:
    """Where spend ends at the rate of its ``days_done`` completed days, when it would pass
    ``limit`` before the period's end; None when it would not."""
    if days_done <= 0 or spent <= 0 or spent * days_total <= limit * days_done:
        return None
    # Spend after day k (1-based) is spent * k / days_done; the first k past the limit.
    day = limit * days_done // spent + 1
    return Forecast(spent * days_total // days_done, start + timedelta(days=day - 1))


def baseline(history: Sequence[int]) -> Fraction:
    """The median of the daily amounts (exact: half-way between the middle two)."""
    ordered = sorted(history)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return Fraction(ordered[middle])
    return Fraction(ordered[middle - 1] + ordered[middle], 2)


def anomaly(day: int, history: Sequence[int], rules: Rules) -> Fraction | None:
    """The baseline when ``day`` (pico-units) is anomalous against ``history`` (one amount
    per earlier day, zeros included), else None."""
    if sum(1 for amount in history if amount > 0) < rules.anomaly_min_history_days:
        return None
    usual = baseline(history)
    if day >= usual * Fraction(rules.anomaly_factor) and (
        day - usual >= to_pico(rules.anomaly_min_increase)
    ):
        return usual
    return None
