"""Applying shared-cost rules to a period: one origin charge per rule segment, pool and
currency, split into allocated children that sum to it exactly and carry their ratios.

A rule's segment is the part of the period its effective window covers. The pool's cost in
the segment comes from the daily rollups (shared or allocated usage naming the pool);
``proportional`` weighs recipients by their direct cost in the same segment and currency,
including cost the exception queue reallocated to them (at its current cost). Pool cost on
days no rule covers is reported as uncovered: it stays with the pool, visibly.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from fractions import Fraction
from typing import Literal

import sqlalchemy as sa

from spendtrail.allocation.rules import Rule, RulesError
from spendtrail.allocation.split import SplitError, ratios, split
from spendtrail.errors import Problem
from spendtrail.ledger.costs import is_current
from spendtrail.ledger.schema import cost_entries, reallocations, rollups_daily
from spendtrail.periods import Period
from spendtrail.registry import Registry

ChargeStatus = Literal["split", "central", "held", "unsplit"]
RATIO_PLACES = 12


@dataclass(frozen=True, slots=True)
class Child:
    recipient: str
    amount_pico: int
    ratio: Fraction


@dataclass(frozen=True, slots=True)
class OriginCharge:
    rule: Rule
    currency: str
    start: date
    end: date  # exclusive
    amount_pico: int
    status: ChargeStatus
    children: tuple[Child, ...]
    detail: str = ""

    @property
    def id(self) -> str:
        last = date.fromordinal(self.end.toordinal() - 1)
        return f"{self.rule.id}/{self.currency}/{self.start}..{last}"

    def method_details(self) -> dict:
        """FOCUS AllocatedMethodDetails-shaped: one element per child, ratios summing to 1
        (exact fractions beside the decimal, which may be rounded)."""
        return {
            "Elements": [
                {
                    "AllocatedRatio": ratio_text(child.ratio),
                    "x_ExactRatio": str(child.ratio),
                    "x_Recipient": child.recipient,
                    "x_AmountPico": child.amount_pico,
                }
                for child in self.children
            ],
            "x_Method": self.rule.method,
            "x_RuleId": self.rule.id,
        }


@dataclass(frozen=True, slots=True)
class Uncovered:
    pool: str
    currency: str
    amount_pico: int


@dataclass(frozen=True, slots=True)
class SharedAllocation:
    period: Period
    charges: tuple[OriginCharge, ...]
    uncovered: tuple[Uncovered, ...]


def ratio_text(ratio: Fraction, places: int = RATIO_PLACES) -> str:
    """A ratio as a decimal string, rounded half-even to ``places`` when it does not end."""
    scaled = ratio * 10**places
    whole = round(scaled)
    text = f"{abs(whole):0{places + 1}d}"
    digits = f"{text[:-places]}.{text[-places:]}".rstrip("0").rstrip(".")
    return ("-" if whole < 0 else "") + digits


def check_rules(rules: list[Rule], registry: Registry) -> None:
    """Every pool and recipient must be an owner the registry knows."""
    owners = {*registry.applications, registry.shared_pool.id}
    problems = []
    for rule in rules:
        for name in (rule.pool, *(rule.recipients or ())):
            if name not in owners:
                problems.append(Problem(rule.source, rule.line,
                                        f"rule '{rule.id}': '{name}' is not an application or "
                                        "the shared pool in the registry"))
    if problems:
        raise RulesError("\n".join(map(str, problems)), problems)


def apply_rules(conn: sa.Connection, rules: list[Rule], period: Period) -> SharedAllocation:
    charges: list[OriginCharge] = []
    covered: dict[tuple[str, str], int] = defaultdict(int)
    for rule in sorted(rules, key=lambda r: (r.pool, r.effective_from)):
        window = rule.window(period.start, period.end)
        if window is None:
            continue
        pool_cost = _pool_cost(conn, *window, rule.pool)
        direct = _direct_cost(conn, *window) if rule.method in ("proportional", "even") else {}
        for currency, by_owner in sorted(pool_cost.items()):
            amount = by_owner.get(rule.pool, 0)
            if amount == 0:
                continue
            covered[rule.pool, currency] += amount
            charges.append(_charge(rule, currency, window, amount, direct.get(currency, {})))
    shared = _cost(conn, period.start, period.end,
                   rollups_daily.c.allocation_status == "shared")
    pools = {rule.pool for rule in rules} | {name for costs in shared.values() for name in costs}
    uncovered = []
    for pool in sorted(pools):
        for currency, by_owner in sorted(_pool_cost(conn, period.start, period.end, pool).items()):
            rest = by_owner.get(pool, 0) - covered[pool, currency]
            if rest:
                uncovered.append(Uncovered(pool, currency, rest))
    return SharedAllocation(period, tuple(charges), tuple(uncovered))


def _charge(
    rule: Rule, currency: str, window: tuple[date, date], amount: int, direct: dict[str, int]
) -> OriginCharge:
    start, end = window
    if rule.method == "hold":
        return OriginCharge(rule, currency, start, end, amount, "held", (),
                            "not charged until the rule is resolved")
    if rule.method == "central":
        return OriginCharge(rule, currency, start, end, amount, "central",
                            (Child(rule.pool, amount, Fraction(1)),))
    if rule.method == "fixed":
        recipients, weights = rule.recipients or (), list(rule.coefficients or ())
    else:
        recipients = rule.recipients or tuple(
            name for name, cost in sorted(direct.items()) if cost and name != rule.pool
        )
        weights = [direct.get(name, 0) if rule.method == "proportional" else 1
                   for name in recipients]
    try:
        shares = ratios(weights)
    except SplitError as exc:
        basis = "direct cost" if rule.method == "proportional" else "recipients"
        return OriginCharge(rule, currency, start, end, amount, "unsplit", (),
                            f"stays with the pool: cannot split by {basis}: {exc}")
    parts = split(amount, shares)
    children = tuple(Child(name, part, share)
                     for name, part, share in zip(recipients, parts, shares, strict=True))
    return OriginCharge(rule, currency, start, end, amount, "split", children)


def _cost(
    conn: sa.Connection, start: date, end: date, condition: sa.ColumnElement[bool]
) -> dict[str, dict[str, int]]:
    """Rollup cost by currency and application over [start, end) where ``condition``."""
    r = rollups_daily.c
    result: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for currency, application, amount in conn.execute(
        sa.select(r.currency, r.application, sa.func.sum(r.amount_pico))
        .where(r.day >= start, r.day < end, r.currency != "", condition)
        .group_by(r.currency, r.application)
    ):
        result[currency][application] += int(amount)
    return result


def _pool_cost(
    conn: sa.Connection, start: date, end: date, pool: str
) -> dict[str, dict[str, int]]:
    r = rollups_daily.c
    return _cost(conn, start, end,
                 sa.and_(r.application == pool, r.allocation_status != "quarantined"))


def _direct_cost(conn: sa.Connection, start: date, end: date) -> dict[str, dict[str, int]]:
    """Allocated usage plus what the exception queue reallocated to each owner."""
    result = _cost(conn, start, end, rollups_daily.c.allocation_status == "allocated")
    m, c = reallocations.c, cost_entries.c
    for currency, application, amount in conn.execute(
        sa.select(c.currency, m.to_application, sa.func.sum(c.amount_pico))
        .select_from(reallocations.join(
            cost_entries, sa.and_(c.event_id == m.event_id, is_current())))
        .where(m.day >= start, m.day < end, c.currency.is_not(None))
        .group_by(c.currency, m.to_application)
    ):
        result[currency][application] += int(amount)
    return result
