"""Unit economics: cost per unit per owner for a period.

A unit metric divides an owner's charges for the period (its allocation entries: direct,
reassigned, shared, true-up and adjustments; the same figure as its statement) by a
denominator: ``tokens`` (input + output) and ``requests`` (recorded calls, retries included)
come from the ledger; any other denominator is read from a CSV of ``owner,denominator,value``
rows for the period. Costs are exact; the quotient is rounded half-even to 12 places.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from pathlib import Path

import sqlalchemy as sa

from spendtrail.allocation.entries import period_entries
from spendtrail.errors import SpendtrailError
from spendtrail.money import from_pico, parse_decimal, plain_decimal
from spendtrail.periods import Period
from spendtrail.reports.costs import cost_report
from spendtrail.yamlfile import Reader

LEDGER_DENOMINATORS = ("tokens", "requests")
CADENCES = ("daily", "weekly", "monthly", "quarterly")
_QUANTUM = Decimal(1).scaleb(-12)


class UnitCostError(SpendtrailError):
    """A metric definition or denominator file that cannot be used."""


@dataclass(frozen=True, slots=True)
class UnitMetric:
    name: str
    numerator: str  # "cost": the owner's charges
    denominator: str
    denominator_source: str
    refresh: str
    scale: int = 1  # units per denominator step: 1_000_000 for "per 1M tokens"


BUILT_IN = (
    UnitMetric("cost_per_1m_tokens", "cost", "tokens", "ledger", "daily", 1_000_000),
    UnitMetric("cost_per_request", "cost", "requests", "ledger", "daily"),
)


@dataclass(frozen=True, slots=True)
class UnitCost:
    metric: str
    owner: str
    currency: str
    cost: Decimal
    denominator: Decimal | None  # None when the denominator has no value for the owner
    cost_per_unit: Decimal | None

    def row(self) -> dict[str, str]:
        return {"metric": self.metric, "owner": self.owner, "currency": self.currency,
                "cost": plain_decimal(self.cost),
                "denominator": "" if self.denominator is None else plain_decimal(self.denominator),
                "cost_per_unit": "n/a" if self.cost_per_unit is None
                else plain_decimal(self.cost_per_unit)}


def load_metrics(path: str | Path) -> list[UnitMetric]:
    """Metric definitions: ``metrics: [{name, numerator, denominator, denominator_source,
    refresh}]``; every problem is reported with its line."""
    path = Path(path)
    reader = Reader(str(path), "the metrics file", UnitCostError)
    keys = ("name", "numerator", "denominator", "denominator_source", "refresh")
    metrics = []
    top = reader.document_keys(reader.compose(reader.read_file(path)), ("metrics",), ("metrics",))
    items = reader.sequence(top["metrics"], "metrics") if top and "metrics" in top else None
    for index, node in enumerate(items or ()):
        what = f"metrics[{index}]"
        fields = reader.mapping(node, what, keys, keys)
        if not fields or len(fields) != len(keys):
            continue
        values = {k: reader.string(fields[k], f"{what}.{k}") for k in keys}
        if None in values.values():
            continue
        if values["numerator"] != "cost":
            reader.problem(fields["numerator"], f"{what}.numerator: expected 'cost'")
        elif values["refresh"] not in CADENCES:
            reader.problem(fields["refresh"], f"{what}.refresh: expected one of "
                           f"{', '.join(CADENCES)}")
        else:
            metrics.append(UnitMetric(**values))
    if reader.problems:
        raise reader.failure()
    return metrics


def load_denominators(path: str | Path) -> dict[tuple[str, str], Decimal]:
    """(owner, denominator) -> value, from a CSV with the header owner,denominator,value."""
    path = Path(path)
    found: dict[tuple[str, str], Decimal] = {}
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = csv.DictReader(handle)
            if rows.fieldnames is None or set(rows.fieldnames) != {"owner", "denominator",
                                                                    "value"}:
                raise UnitCostError(f"{path}: expected the header owner,denominator,value")
            for number, row in enumerate(rows, start=2):
                key = (row["owner"].strip(), row["denominator"].strip())
                if key in found:
                    raise UnitCostError(f"{path}:{number}: duplicate {key[1]} for {key[0]}")
                value = parse_decimal(row["value"], field=f"{path}:{number}: value")
                if value < 0:
                    raise UnitCostError(f"{path}:{number}: value must not be negative")
                found[key] = value
    except OSError as exc:
        raise UnitCostError(f"{path}: cannot read the denominators: {exc}") from None
    return found


def unit_costs(
    conn: sa.Connection,
    period: Period,
    metrics: list[UnitMetric],
    denominators: dict[tuple[str, str], Decimal] | None = None,
) -> list[UnitCost]:
    charges = period_entries(conn, period).charges()
    report = cost_report(conn, period, ("application", "allocation_status"))
    usage = {row.key["application"]: row for row in report.rows
             if row.key["allocation_status"] == "allocated"}
    results = []
    for metric in metrics:
        for owner, money in charges.items():
            row = usage.get(owner)
            if metric.denominator == "tokens":
                units: Decimal | None = Decimal(
                    row.input_tokens + row.output_tokens if row else 0)
            elif metric.denominator == "requests":
                units = Decimal(row.events if row else 0)
            else:
                units = (denominators or {}).get((owner, metric.denominator))
            for currency, pico in sorted(money.items()):
                cost = from_pico(pico)
                per_unit = None
                if units:
                    try:
                        per_unit = (cost * metric.scale / units).quantize(
                            _QUANTUM, ROUND_HALF_EVEN).normalize()
                    except InvalidOperation:  # beyond Decimal's precision
                        per_unit = None
                results.append(UnitCost(metric.name, owner, currency, cost, units, per_unit))
    return results
