"""The shared-cost splits the FOCUS export writes as split cost allocation (FOCUS 1.3+).

``shared_splits`` is the one place the export learns how a pool's cost is split: the
period's allocation entries (``allocation.entries``), the same split every report shows.

Each split names the pool, currency and days it covers, the recipients and their ratios as
decimals of ``RATIO_PLACES`` places that sum to exactly 1 (the exact fractions rounded by
largest remainder), and each recipient's amount of the charge in pico-units. ``Shares``
deals each origin row out to the recipients so that, over the split's rows, every recipient
gets exactly its entry's amount and every row is split exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from fractions import Fraction

from spendtrail.allocation.entries import PeriodEntries
from spendtrail.allocation.shared import RATIO_PLACES, OriginCharge
from spendtrail.allocation.split import SplitError, split

# How each rule method measures a recipient's share (AllocatedMethodDetails UsageUnit).
METHOD_UNITS = {
    "proportional": "Direct Cost",
    "even": "Recipients",
    "fixed": "Fixed Share",
    "central": "Central Pool",
}


@dataclass(frozen=True, slots=True)
class Recipient:
    application: str
    ratio: Decimal  # RATIO_PLACES places; a split's ratios sum to exactly 1
    exact: Fraction  # the rule's own ratio
    amount_pico: int  # its share of the charge (its allocation entry)


@dataclass(frozen=True, slots=True)
class Split:
    origin_id: str  # rule / currency / days
    pool: str
    currency: str
    start: date
    end: date  # exclusive
    method: str
    rule_id: str
    rules_version: int | None
    recipients: tuple[Recipient, ...]

    def covers(self, pool: str, currency: str, day: date) -> bool:
        return (pool, currency) == (self.pool, self.currency) and self.start <= day < self.end


def shared_splits(entries: PeriodEntries) -> list[Split]:
    """The period's split (or centrally held) pool charges, from its allocation entries.
    Held and unsplittable charges stay with their pool."""
    return [
        _split(charge, entries.rules_version)
        for charge in entries.shared.charges
        if charge.status in ("split", "central")
    ]


class Shares:
    """Deals origin rows out to a split's recipients: each row in proportion to what each
    recipient is still owed, so the last row of a split settles every recipient exactly."""

    def __init__(self) -> None:
        self._owed: dict[str, list[int]] = {}

    def deal(self, found: Split, row_pico: int) -> list[int]:
        owed = self._owed.setdefault(found.origin_id,
                                     [r.amount_pico for r in found.recipients])
        try:
            parts = split(row_pico, owed)
        except SplitError:  # nothing owed any more (the books changed): by the ratios
            parts = split(row_pico, [r.exact for r in found.recipients])
        for index, part in enumerate(parts):
            owed[index] -= part
        return parts


def _split(charge: OriginCharge, version: int | None) -> Split:
    exact = [child.ratio for child in charge.children]
    units = split(10**RATIO_PLACES, exact)  # sums to 10**RATIO_PLACES: ratios sum to 1
    return Split(
        origin_id=charge.id,
        pool=charge.rule.pool,
        currency=charge.currency,
        start=charge.start,
        end=charge.end,
        method=charge.rule.method,
        rule_id=charge.rule.id,
        rules_version=version,
        recipients=tuple(
            Recipient(child.recipient, Decimal(unit).scaleb(-RATIO_PLACES), child.ratio,
                      child.amount_pico)
            for child, unit in zip(charge.children, units, strict=True)
        ),
    )
