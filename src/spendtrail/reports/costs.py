"""Cost by owner, model and day for a period, read from the daily rollups (O(days x groups))."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

import sqlalchemy as sa

from spendtrail.access.scope import EVERYONE, AccessScope
from spendtrail.errors import SpendtrailError
from spendtrail.ledger.event_list import CLAIMED, QUARANTINED, filter_condition
from spendtrail.ledger.schema import ROLLUP_DIMENSIONS, rollups_daily
from spendtrail.ledger.scoping import scope_condition
from spendtrail.money import from_pico
from spendtrail.periods import Period

GROUPABLE = tuple(d for d in ROLLUP_DIMENSIONS if d != "currency")


@dataclass
class CostRow:
    key: dict[str, str]
    events: int = 0
    successes: int = 0
    unpriced_events: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_pico: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def cost(self) -> dict[str, Decimal]:
        return {cur: from_pico(p) for cur, p in sorted(self.cost_pico.items()) if cur}


@dataclass
class CostReport:
    period: Period
    group_by: tuple[str, ...]
    rows: list[CostRow]
    totals: CostRow
    quarantined: CostRow
    shared: CostRow


def cost_report(conn: sa.Connection, period: Period, group_by: tuple[str, ...], *,
                scope: AccessScope = EVERYONE,
                filters: Mapping[str, str] | None = None) -> CostReport:
    """Cost grouped by ``group_by``, of the rows ``scope`` may see, where each column named
    in ``filters`` has its value (``ledger.event_list.filter_condition``: the events under a
    row are selected by the same rule)."""
    unknown = [g for g in (*group_by, *(filters or ())) if g not in GROUPABLE]
    if unknown:
        raise SpendtrailError(
            f"cannot group or filter by {', '.join(unknown)}; choose from {', '.join(GROUPABLE)}"
        )
    r = rollups_daily.c
    query = sa.select(rollups_daily).where(
        r.day >= period.start, r.day < period.end, scope_condition(scope, rollups_daily)
    )
    for name, value in (filters or {}).items():
        query = query.where(filter_condition(r, name, value))
    groups: dict[tuple, CostRow] = {}
    totals, quarantined, shared = CostRow({}), CostRow({}), CostRow({})
    for row in conn.execute(query).mappings():
        held = row["allocation_status"] == "quarantined"
        key = tuple(QUARANTINED if held and g in CLAIMED else _text(row[g]) for g in group_by)
        target = groups.get(key)
        if target is None:
            target = groups[key] = CostRow(dict(zip(group_by, key, strict=True)))
        buckets = [target, totals]
        if row["allocation_status"] == "quarantined":
            buckets.append(quarantined)
        elif row["allocation_status"] == "shared":
            buckets.append(shared)
        for bucket in buckets:
            _accumulate(bucket, row)
    rows = sorted(groups.values(), key=lambda c: tuple(c.key.values()))
    return CostReport(period, group_by, rows, totals, quarantined, shared)


def _accumulate(bucket: CostRow, row) -> None:
    bucket.events += row["events"]
    bucket.successes += row["successes"]
    bucket.unpriced_events += row["unpriced_events"]
    bucket.input_tokens += row["input_tokens"]
    bucket.output_tokens += row["output_tokens"]
    bucket.cost_pico[row["currency"]] += row["amount_pico"]



def _text(value) -> str:
    return value.isoformat() if isinstance(value, date) else value
