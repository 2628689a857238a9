"""The true-up rule: how a reconciled variance (what the bill says minus what the ledger
computed) is carried to owners, so that once a month is reconciled its owners' charges add
up to the invoice exactly.

- ``proportional`` (the default): in proportion to each owner's matched billed cost (the
  reconciliation's owner breakdown, owners with a charge this month only), split exactly
  (largest remainder on pico-units, ``split.py``).
- ``central``: held centrally, all of it charged to one owner (the registry's shared pool).

With no owner to weigh by (nothing matched, or only quarantined and unattributed lines),
the proportional rule falls back to the central owner, and says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction

from spendtrail.allocation.split import ratios, split
from spendtrail.errors import SpendtrailError

TRUE_UP_RULES = ("proportional", "central")
DEFAULT_TRUE_UP = "proportional"


@dataclass(frozen=True, slots=True)
class TrueUpShare:
    owner: str
    amount_pico: int
    ratio: Fraction
    note: str = ""


def check_rule(rule: str) -> str:
    if rule not in TRUE_UP_RULES:
        raise SpendtrailError(f"true-up rule {rule!r}: expected one of {', '.join(TRUE_UP_RULES)}")
    return rule


def true_up(
    variance_pico: int, billed_by_owner: Mapping[str, int], rule: str, central_owner: str
) -> list[TrueUpShare]:
    """``variance_pico`` (bill minus ledger) as shares that sum to it exactly."""
    check_rule(rule)
    if variance_pico == 0:
        return []
    weights = {owner: billed for owner, billed in sorted(billed_by_owner.items()) if billed > 0}
    if rule == "central":
        return [TrueUpShare(central_owner, variance_pico, Fraction(1), "held centrally")]
    if not weights:
        return [
            TrueUpShare(
                central_owner,
                variance_pico,
                Fraction(1),
                "held centrally: no owner's matched billed cost to weigh by",
            )
        ]
    owners = list(weights)
    shares = ratios([weights[owner] for owner in owners])
    parts = split(variance_pico, shares)
    return [
        TrueUpShare(owner, part, share)
        for owner, part, share in zip(owners, parts, shares, strict=True)
    ]
