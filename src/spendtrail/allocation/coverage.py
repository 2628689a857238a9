"""Coverage KPIs for a period, from the daily rollups and the exception queue's reallocations.

Per currency: the share of cost allocated to an owner, shared, and quarantined; unpriced
usage has no cost, so its share is counted in events. Cost the exception queue reassigned
counts as allocated (and no longer as quarantined), at the event's current cost.
Unallocated = quarantined cost share + unpriced event share; past the threshold (default 5%)
the coverage carries an alert.
Untagged usage is its own line, never merged into an owner it resembles.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from fractions import Fraction

import sqlalchemy as sa

from spendtrail.allocation.exceptions import UNTAGGED
from spendtrail.errors import SpendtrailError
from spendtrail.ledger.costs import is_current
from spendtrail.ledger.schema import cost_entries, reallocations, rollups_daily
from spendtrail.periods import Period

DEFAULT_THRESHOLD = Fraction(5, 100)
STATUSES = ("allocated", "shared", "quarantined")


@dataclass
class CurrencyCoverage:
    currency: str
    cost_pico: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))

    @property
    def total_pico(self) -> int:
        return sum(self.cost_pico.values())

    def share(self, status: str) -> Fraction | None:
        total = self.total_pico
        return None if total == 0 else Fraction(self.cost_pico[status], total)


@dataclass(frozen=True, slots=True)
class OwnerLine:
    status: str  # allocated | shared | quarantined | reallocated
    owner: str  # the application, UNTAGGED when none was captured
    currency: str  # '' for usage with no cost (unpriced)
    events: int
    cost_pico: int


@dataclass
class Coverage:
    period: Period
    threshold: Fraction
    currencies: list[CurrencyCoverage]
    events: dict[str, int]  # by status, after reallocation
    unpriced_events: int
    reallocated_events: int
    lines: list[OwnerLine]

    @property
    def total_events(self) -> int:
        return sum(self.events.values())

    @property
    def unpriced_share(self) -> Fraction | None:
        total = self.total_events
        return None if total == 0 else Fraction(self.unpriced_events, total)

    def unallocated_share(self, currency: CurrencyCoverage) -> Fraction:
        return (currency.share("quarantined") or Fraction(0)) + (self.unpriced_share or 0)

    def over_threshold(self) -> list[tuple[str, Fraction]]:
        """(currency, unallocated share) past the threshold; the currency is '' for unpriced
        usage alone (a period without any cost)."""
        over = [(c.currency, share) for c in self.currencies
                if (share := self.unallocated_share(c)) > self.threshold]
        unpriced = self.unpriced_share or Fraction(0)
        if not self.currencies and unpriced > self.threshold:
            over.append(("", unpriced))
        return over

    def alerts(self) -> list[str]:
        """One message per currency (or for unpriced usage alone) past the threshold."""
        limit = f"{float(self.threshold * 100):g}%"
        return [
            f"unallocated {currency} spend is {percent(share)} of {self.period.label} "
            f"(quarantined cost + unpriced events), over {limit}"
            if currency else
            f"unpriced usage is {percent(share)} of the events of {self.period.label}, "
            f"over {limit}"
            for currency, share in self.over_threshold()
        ]


def percent(share: Fraction | None, places: int = 2) -> str:
    if share is None:
        return "n/a"
    scaled = round(share * 100 * 10**places)  # half-even on the exact fraction
    sign = "-" if scaled < 0 else ""
    whole, frac = divmod(abs(scaled), 10**places)
    return f"{sign}{whole}.{frac:0{places}d}%"


def parse_threshold(text: str) -> Fraction:
    """'5%', '2.5%' or '5' (percent) -> an exact fraction of 1."""
    try:
        value = Fraction(Decimal(text.strip().removesuffix("%").strip())) / 100
    except (InvalidOperation, ValueError, OverflowError):
        value = Fraction(-1)
    if not 0 <= value <= 1:
        raise SpendtrailError(f"threshold {text!r}: expected a percent from 0 to 100, e.g. 5%")
    return value


def coverage(
    conn: sa.Connection, period: Period, threshold: Fraction = DEFAULT_THRESHOLD
) -> Coverage:
    r = rollups_daily.c
    rows = conn.execute(
        sa.select(r.allocation_status, r.application, r.currency, sa.func.sum(r.events),
                  sa.func.sum(r.unpriced_events), sa.func.sum(r.amount_pico))
        .where(r.day >= period.start, r.day < period.end)
        .group_by(r.allocation_status, r.application, r.currency)
    ).all()
    m, c = reallocations.c, cost_entries.c
    # A reassigned event moves at its current cost: a repricing after the assignment moves
    # with it.
    moved = conn.execute(
        sa.select(m.from_application, m.to_application, c.currency, sa.func.count(),
                  sa.func.sum(c.amount_pico))
        .select_from(reallocations.outerjoin(
            cost_entries, sa.and_(c.event_id == m.event_id, is_current())))
        .where(m.day >= period.start, m.day < period.end)
        .group_by(m.from_application, m.to_application, c.currency)
    ).all()

    by_currency: dict[str, CurrencyCoverage] = {}
    events: dict[str, int] = dict.fromkeys(STATUSES, 0)
    lines: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    unpriced = 0
    for status, application, currency, count, unpriced_count, amount in rows:
        events[status] += int(count)
        unpriced += int(unpriced_count)
        if currency:
            by_currency.setdefault(currency, CurrencyCoverage(currency)).cost_pico[status] += (
                int(amount))
        _add(lines, (status, application or UNTAGGED, currency), int(count), int(amount))
    reallocated = 0
    for source, target, currency, count, amount in moved:
        cost = int(amount or 0)
        reallocated += count
        events["quarantined"] -= count
        events["allocated"] += count
        if currency:
            costs = by_currency.setdefault(currency, CurrencyCoverage(currency)).cost_pico
            costs["quarantined"] -= cost
            costs["allocated"] += cost
        _add(lines, ("quarantined", source or UNTAGGED, currency or ""), -count, -cost)
        _add(lines, ("reallocated", target, currency or ""), count, cost)
    return Coverage(
        period=period,
        threshold=threshold,
        currencies=[by_currency[c] for c in sorted(by_currency)],
        events=events,
        unpriced_events=unpriced,
        reallocated_events=reallocated,
        lines=[OwnerLine(*key, *values) for key, values in sorted(lines.items())
               if values != [0, 0]],
    )


def _add(lines: dict, key: tuple[str, str, str], count: int, cost: int) -> None:
    lines[key][0] += count
    lines[key][1] += cost
