"""Exact money.

Amounts are ``Decimal`` in code and integer pico-units (10**-12 of the currency unit) in
storage, so SQL can add them exactly on SQLite and PostgreSQL alike. A price quoted per
million tokens with at most 6 decimal places, or per call with at most 12, therefore gives
an exact stored cost; the pricing layer rejects prices finer than that instead of rounding.
An int64 column holds up to about 9.2 million currency units per stored value (one event,
one rollup row); report totals are summed in Python, where integers do not overflow.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from spendtrail.errors import SpendtrailError

PICO = Decimal(10) ** 12
_PICO_QUANTUM = Decimal(1).scaleb(-12)


class MoneyError(SpendtrailError):
    """An amount that cannot be represented exactly, or a currency mismatch."""


def parse_decimal(value: object, *, field: str = "amount") -> Decimal:
    """Parse a user-supplied number into a Decimal without going through float."""
    if isinstance(value, bool):
        raise MoneyError(f"{field}: expected a number, got {value!r}")
    if isinstance(value, float):
        # A float has already lost exactness; its shortest repr is what the user wrote.
        value = repr(value)
    try:
        result = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise MoneyError(f"{field}: expected a decimal number, got {value!r}") from None
    if not result.is_finite():
        raise MoneyError(f"{field}: expected a finite number, got {value!r}")
    return result


def to_pico(amount: Decimal) -> int:
    """Decimal -> integer pico-units; refuses to round."""
    scaled = amount * PICO
    if scaled != scaled.to_integral_value():
        raise MoneyError(f"{amount} has more than 12 decimal places; it cannot be stored exactly")
    return int(scaled)


def from_pico(pico: int) -> Decimal:
    return (Decimal(pico) / PICO).quantize(_PICO_QUANTUM).normalize() if pico else Decimal(0)


@dataclass(frozen=True, slots=True)
class Money:
    amount: Decimal
    currency: str = "USD"

    def __post_init__(self) -> None:
        if not isinstance(self.amount, Decimal):
            raise MoneyError(f"Money amount must be Decimal, got {type(self.amount).__name__}")
        if len(self.currency) != 3 or not self.currency.isalpha() or not self.currency.isupper():
            raise MoneyError(f"currency must be a 3-letter ISO 4217 code, got {self.currency!r}")

    def __add__(self, other: Money) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        if other.currency != self.currency:
            raise MoneyError(f"cannot add {self.currency} and {other.currency}")
        return Money(self.amount + other.amount, self.currency)

    @classmethod
    def zero(cls, currency: str = "USD") -> Money:
        return cls(Decimal(0), currency)

    @classmethod
    def from_pico(cls, pico: int, currency: str) -> Money:
        return cls(from_pico(pico), currency)

    def to_pico(self) -> int:
        return to_pico(self.amount)

    def __str__(self) -> str:
        return f"{format_amount(self.amount)} {self.currency}"


def plain_decimal(value: Decimal) -> str:
    """Machine output (JSON, CSV): the exact value in plain digits, never an exponent (10 USD
    is ``10``, not ``1E+1``; ``0.00000015``, not ``1.5E-7``), without trailing fractional
    zeros, and zero never negative. No rounding: the text reads back as the same Decimal."""
    if value == 0:
        return "0"
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def format_amount(amount: Decimal, places: int = 6) -> str:
    """Human display: at least 2 and up to `places` decimals, never hiding a non-zero value."""
    text = f"{amount:.{places}f}"
    whole, _, frac = text.partition(".")
    frac = frac.rstrip("0").ljust(2, "0")
    if amount != 0 and Decimal(f"{whole}.{frac}") == 0:
        return f"{amount:.2E}"
    return f"{whole}.{frac}"
