from decimal import Decimal

import pytest

from spendtrail.money import (
    Money,
    MoneyError,
    format_amount,
    from_pico,
    parse_decimal,
    plain_decimal,
    to_pico,
)


def test_pico_round_trip_is_exact():
    for text in ["0", "0.000000000001", "1.25", "123456.789012345678", "-0.5"]:
        amount = Decimal(text)
        assert from_pico(to_pico(amount)) == amount


def test_to_pico_refuses_to_round():
    with pytest.raises(MoneyError, match="more than 12 decimal places"):
        to_pico(Decimal("0.0000000000001"))


def test_parse_decimal_never_goes_through_binary_float():
    assert parse_decimal("0.1") + parse_decimal("0.2") == Decimal("0.3")
    assert parse_decimal(0.1) == Decimal("0.1")
    for bad in ["abc", "NaN", "Infinity", True, ""]:
        with pytest.raises(MoneyError):
            parse_decimal(bad, field="price")


def test_money_refuses_mixed_currencies_and_floats():
    assert Money(Decimal("1.10")) + Money(Decimal("2.20")) == Money(Decimal("3.30"))
    with pytest.raises(MoneyError, match="cannot add USD and EUR"):
        Money(Decimal(1), "USD") + Money(Decimal(1), "EUR")
    with pytest.raises(MoneyError, match="must be Decimal"):
        Money(1.5)  # type: ignore[arg-type]
    with pytest.raises(MoneyError, match="ISO 4217"):
        Money(Decimal(1), "usd")


def test_format_amount_never_shows_a_small_cost_as_zero():
    assert format_amount(Decimal("12.5")) == "12.50"
    assert format_amount(Decimal("0.000725")) == "0.000725"
    assert format_amount(Decimal("0.00000015")) == "1.50E-7"


@pytest.mark.parametrize(("value", "text"), [
    (from_pico(10 * 10**12), "10"),  # from_pico normalizes to Decimal('1E+1')
    (from_pico(150_000), "0.00000015"),  # Decimal('1.5E-7')
    (Decimal("-2.50"), "-2.5"),
    (Decimal("1E+3"), "1000"),
    (Decimal("-0.000"), "0"),
    (Decimal("123456789.000000000001"), "123456789.000000000001"),
])
def test_plain_decimal_has_no_exponent_and_reads_back_exactly(value, text):
    assert plain_decimal(value) == text
    assert Decimal(text) == value
