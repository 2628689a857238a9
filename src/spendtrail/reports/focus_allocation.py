"""The shared-cost splits the FOCUS export writes as split cost allocation (FOCUS 1.3+).

``shared_splits`` is the one place the export learns how a pool's cost is split: today it
applies the latest stored shared-cost rules to the period (``allocation.shared``); when
allocation entries are stored per period it reads those instead, and nothing else changes.

Each split names the pool, currency and days it covers, the recipients and their ratios as
decimals of ``RATIO_PLACES`` places that sum to exactly 1 (the exact fractions rounded by
largest remainder, so a child's share of an origin row is an exact decimal product).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from fractions import Fraction

import sqlalchemy as sa

from spendtrail.allocation.rule_store import latest_version
from spendtrail.allocation.shared import RATIO_PLACES, OriginCharge, apply_rules
from spendtrail.allocation.split import split
from spendtrail.periods import Period

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


@dataclass(frozen=True, slots=True)
class Split:
    origin_id: str  # rule / currency / days
    pool: str
    currency: str
    start: date
    end: date  # exclusive
    method: str
    rule_id: str
    rules_version: int
    recipients: tuple[Recipient, ...]

    def covers(self, pool: str, currency: str, day: date) -> bool:
        return (pool, currency) == (self.pool, self.currency) and self.start <= day < self.end


def shared_splits(conn: sa.Connection, period: Period) -> list[Split]:
    """The period's split (or centrally held) pool charges under the latest stored rules;
    none when no rules were stored. Held and unsplittable charges stay with their pool."""
    stored = latest_version(conn)
    if stored is None:
        return []
    allocation = apply_rules(conn, stored.rules, period)
    return [
        _split(charge, stored.version)
        for charge in allocation.charges
        if charge.status in ("split", "central")
    ]


def _split(charge: OriginCharge, version: int) -> Split:
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
            Recipient(child.recipient, Decimal(unit).scaleb(-RATIO_PLACES), child.ratio)
            for child, unit in zip(charge.children, units, strict=True)
        ),
    )
