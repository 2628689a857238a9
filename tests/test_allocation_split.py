"""Largest-remainder splits of integer pico amounts: exact sums, fair remainders, reproducible."""

from __future__ import annotations

import math
import random
from fractions import Fraction

import pytest

from spendtrail.allocation.shared import ratio_text
from spendtrail.allocation.split import SplitError, ratios, split


def check_largest_remainder(total: int, weights: list, parts: list[int]) -> None:
    exact = [share * abs(total) for share in ratios(weights)]
    magnitudes = [abs(p) for p in parts]
    assert sum(parts) == total
    for part, value in zip(magnitudes, exact, strict=True):
        assert part in (math.floor(value), math.floor(value) + 1)
    # Every recipient that got an extra unit has a remainder at least as large as any that did
    # not, and on equal remainders the earlier recipient got it.
    got = [i for i, (p, v) in enumerate(zip(magnitudes, exact, strict=True)) if p > v]
    missed = [i for i, (p, v) in enumerate(zip(magnitudes, exact, strict=True))
              if p < v and p == math.floor(v)]
    for i in got:
        for j in missed:
            ri, rj = exact[i] - math.floor(exact[i]), exact[j] - math.floor(exact[j])
            assert ri > rj or (ri == rj and i < j)
    if total < 0:
        assert all(p <= 0 for p in parts)


def test_many_random_splits_sum_exactly():
    rng = random.Random(20261005)
    for _ in range(3000):
        n = rng.randint(1, 9)
        weights = [rng.choice([0, rng.randint(1, 10**6), rng.randint(1, 7)]) for _ in range(n)]
        if not any(weights):
            weights[rng.randrange(n)] = 1
        if rng.random() < 0.3:
            weights = [Fraction(w, rng.randint(1, 97)) for w in weights]
        total = rng.choice([rng.randint(-10**15, 10**15), rng.randint(-50, 50), 0])
        parts = split(total, weights)
        check_largest_remainder(total, weights, parts)
        assert split(total, weights) == parts  # reproducible
        assert sum(ratios(weights)) == 1


def test_one_recipient_gets_everything():
    assert split(450_000_001, [3]) == [450_000_001]
    assert split(-7, [Fraction(1, 3)]) == [-7]
    assert ratios([5]) == [Fraction(1)]


def test_ties_go_to_the_earlier_recipient():
    assert split(10, [1, 1, 1]) == [4, 3, 3]
    assert split(11, [1, 1, 1]) == [4, 4, 3]
    assert split(2, [1, 0, 1, 1]) == [1, 0, 1, 0]


def test_credits_mirror_charges():
    assert split(-10, [1, 1, 1]) == [-4, -3, -3]
    for total in (1, 999_999_999_999, 123_456_789):
        assert split(-total, [7, 3, 11]) == [-p for p in split(total, [7, 3, 11])]


def test_zero_weights_get_zero_and_largest_remainder_wins():
    assert split(100, [0, 1, 0, 3]) == [0, 25, 0, 75]
    # exact shares 33.33.., 66.66..: the larger remainder takes the odd unit
    assert split(100, [1, 2]) == [33, 67]


@pytest.mark.parametrize("weights", [[], [0, 0], [1, -1]])
def test_unusable_weights_are_refused(weights):
    with pytest.raises(SplitError):
        split(100, weights)


def test_ratio_text_rounds_only_what_does_not_end():
    assert ratio_text(Fraction(1, 4)) == "0.25"
    assert ratio_text(Fraction(1)) == "1"
    assert ratio_text(Fraction(1, 3)) == "0.333333333333"
    assert ratio_text(Fraction(2, 3)) == "0.666666666667"
    assert ratio_text(Fraction(0)) == "0"
