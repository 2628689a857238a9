"""Exact splitting of an integer pico amount by weights (largest-remainder method).

Children of one origin charge always sum to it exactly: each gets the floor of its exact
share, and the pico-units left over go one each to the largest remainders, ties to the
earlier recipient, so the same inputs always give the same split. A negative total (a
credit) is split as its magnitude and negated, so a refund mirrors the charge it reverses.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

from spendtrail.errors import SpendtrailError


class SplitError(SpendtrailError):
    """Weights that cannot split an amount: none, negative, or all zero."""


def ratios(weights: Sequence[int | Fraction]) -> list[Fraction]:
    """Each weight's exact share of the whole; they sum to exactly 1."""
    if not weights:
        raise SplitError("nothing to split among: no recipients")
    if any(w < 0 for w in weights):
        raise SplitError(f"weights must not be negative, got {list(map(str, weights))}")
    whole = sum(weights, Fraction(0))
    if whole == 0:
        raise SplitError("all weights are zero; there is no basis to split by")
    return [Fraction(w) / whole for w in weights]


def split(total: int, weights: Sequence[int | Fraction]) -> list[int]:
    """``total`` pico-units split in proportion to ``weights``; the parts sum to ``total``."""
    shares = ratios(weights)
    magnitude = abs(total)
    exact = [share * magnitude for share in shares]
    parts = [int(value) for value in exact]  # floor: values are non-negative
    left = magnitude - sum(parts)
    # Largest fractional remainder first; equal remainders keep recipient order.
    order = sorted(range(len(exact)), key=lambda i: (-(exact[i] - parts[i]), i))
    for i in order[:left]:
        parts[i] += 1
    return parts if total >= 0 else [-part for part in parts]
