"""Amounts as a statement displays them: to a currency's minor unit, rounded so that the
displayed lines of a table still add up to its displayed total (largest remainder).

Exact amounts are integer pico-units; a display unit is 10**-decimals of the currency, so
one display unit is ``10**(12 - decimals)`` pico-units. Nothing here changes what is stored
or exported: CSV and JSON keep every pico-unit.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

# ISO 4217 minor units of the currencies that differ from 2; every other code has 2.
_MINOR_UNITS = {
    "BHD": 3,
    "BIF": 0,
    "CLF": 4,
    "CLP": 0,
    "DJF": 0,
    "GNF": 0,
    "IQD": 3,
    "ISK": 0,
    "JOD": 3,
    "JPY": 0,
    "KMF": 0,
    "KRW": 0,
    "KWD": 3,
    "LYD": 3,
    "OMR": 3,
    "PYG": 0,
    "RWF": 0,
    "TND": 3,
    "UGX": 0,
    "UYI": 0,
    "UYW": 4,
    "VND": 0,
    "VUV": 0,
    "XAF": 0,
    "XOF": 0,
    "XPF": 0,
}
MAX_DECIMALS = 12  # a pico-unit


def minor_unit(currency: str) -> int:
    """Decimal places of the currency's minor unit (USD 2, JPY 0, KWD 3)."""
    return _MINOR_UNITS.get(currency, 2)


def _unit(decimals: int) -> int:
    if not 0 <= decimals <= MAX_DECIMALS:
        raise ValueError(f"decimals {decimals}: expected 0 to {MAX_DECIMALS}")
    return 10 ** (MAX_DECIMALS - decimals)


def to_units(pico: int, decimals: int) -> int:
    """Pico-units to display units, rounded half to even (a lone amount, not a table line)."""
    quotient, remainder = divmod(pico, _unit(decimals))
    twice = 2 * remainder
    if twice > _unit(decimals) or (twice == _unit(decimals) and quotient % 2):
        quotient += 1
    return quotient


def spread(picos: Sequence[int], decimals: int, target: int | None = None) -> list[int]:
    """Display units for table lines whose sum is ``target`` display units (by default the
    lines' exact sum, rounded): each line is rounded down, then the units still missing go
    one each to the lines with the largest remainders (ties: the earlier line). A target
    that differs from the exact sum by more than the number of lines keeps going round."""
    unit = _unit(decimals)
    if target is None:
        target = to_units(sum(picos), decimals)
    floors = [pico // unit for pico in picos]
    missing = target - sum(floors)
    if not picos:
        return []
    order = sorted(range(len(picos)), key=lambda i: (-(picos[i] % unit), i))
    result = list(floors)
    step = 1 if missing > 0 else -1
    if step < 0:
        order.reverse()  # take back from the lines that were rounded down least
    rounds, rest = divmod(abs(missing), len(order))  # whole rounds at once: `missing` may be
    for n, i in enumerate(order):                    # billions of units at 12 decimals
        result[i] += step * (rounds + (n < rest))
    return result


def units_text(units: int, decimals: int) -> str:
    """Display units as a fixed-point string with thousands separators: 123456 -> 1,234.56."""
    value = Decimal(units).scaleb(-decimals)
    return f"{value:,.{decimals}f}"


def amount_text(pico: int, decimals: int) -> str:
    return units_text(to_units(pico, decimals), decimals)
