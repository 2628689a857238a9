"""Parsing one cell or JSON value of a bill row, with errors that name the field.

Each parser accepts the text of a CSV cell as well as the typed value of a JSON or Parquet
field, and raises ``RowProblem`` with a message of the form "<field>: expected ..., got ...".
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from spendtrail.errors import SpendtrailError
from spendtrail.money import MoneyError, parse_decimal


class RowProblem(SpendtrailError):
    """A value that makes its row unusable; caught by the importer and yielded as an error."""


# Active ISO 4217 codes, less XTS (testing) and XXX (no currency): a bill is never in those.
ISO_4217 = frozenset(
    """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD
    BTN BWP BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUC CUP CVE CZK DJF DKK DOP
    DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR
    IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD
    MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB
    PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD
    SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS
    VED VES VND VUV WST XAF XAG XAU XBA XBB XBC XBD XCD XCG XDR XOF XPD XPF XPT XSU XUA YER
    ZAR ZMW ZWG ZWL
    """.split()
)

_INT = re.compile(r"^[+-]?\d+$")
# FOCUS date/time: extended ISO 8601 in UTC, ending in Z (fractional seconds allowed).
_UTC_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?Z$")


def text(value: Any) -> str | None:
    """A cell as text: None for a missing, null or blank value."""
    if value is None:
        return None
    result = str(value).strip()
    return result or None


def required_text(value: Any, field: str) -> str:
    result = text(value)
    if result is None:
        raise RowProblem(f"{field}: missing; expected a value")
    return result


def integer(value: Any, field: str) -> int:
    """A whole number, from an int or its digits; never through float."""
    if isinstance(value, bool):
        raise RowProblem(f"{field}: expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    if isinstance(value, str) and _INT.match(value.strip()):
        return int(value.strip())
    raise RowProblem(f"{field}: expected an integer, got {_show(value)}")


def count(value: Any, field: str) -> int:
    """A non-negative integer meter; a blank cell or null counts as 0."""
    if text(value) is None:
        return 0
    result = integer(value, field)
    if result < 0:
        raise RowProblem(f"{field}: expected a non-negative integer, got {result}")
    return result


def decimal(value: Any, field: str) -> Decimal:
    if text(value) is None:
        raise RowProblem(f"{field}: missing; expected a decimal number")
    try:
        return parse_decimal(value, field=field)
    except MoneyError as exc:
        raise RowProblem(str(exc)) from None


def currency(value: Any, field: str) -> str:
    code = required_text(value, field).upper()
    if code not in ISO_4217:
        raise RowProblem(f"{field}: expected an ISO 4217 currency code, got {_show(value)}")
    return code


def json_object(value: Any, field: str) -> dict[str, Any]:
    """A JSON object given as a mapping, as (key, value) pairs (a Parquet MAP column) or as
    its text; empty for no value."""
    if isinstance(value, dict):
        return value
    if isinstance(value, list):
        return dict(value)
    raw = text(value)
    if raw is None:
        return {}
    try:
        parsed = json.loads(raw, parse_float=Decimal)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise RowProblem(f"{field}: expected a JSON object, got {raw[:60]!r}")
    return parsed


def unix_or_iso(value: Any, field: str) -> datetime:
    """Unix seconds, or an ISO 8601 timestamp that carries its UTC offset."""
    if text(value) is None:
        raise RowProblem(f"{field}: missing; expected Unix seconds or an ISO 8601 timestamp")
    if isinstance(value, int | Decimal) or (isinstance(value, str) and _INT.match(value.strip())):
        seconds = integer(value, field)
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            raise RowProblem(f"{field}: Unix seconds out of range, got {seconds}") from None
    return iso(value, field, "Unix seconds or an ISO 8601 timestamp")


def iso(value: Any, field: str, expected: str = "an ISO 8601 timestamp") -> datetime:
    """An ISO 8601 / RFC 3339 timestamp with an offset (or Z), as UTC."""
    if isinstance(value, datetime):
        return _aware(value, field)
    raw = required_text(value, field)
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise RowProblem(f"{field}: expected {expected}, got {_show(value)}") from None
    return _aware(parsed, field)


def utc_z(value: Any, field: str) -> datetime:
    """FOCUS Date/Time: text must be ISO 8601 in UTC ending in Z; typed values must be UTC."""
    if isinstance(value, datetime):
        return _aware(value, field)
    raw = required_text(value, field)
    if not _UTC_Z.match(raw):
        raise RowProblem(
            f"{field}: expected an ISO 8601 UTC date/time ending in Z "
            f"(YYYY-MM-DDTHH:mm:ssZ), got {_show(value)}"
        )
    try:
        return datetime.fromisoformat(raw).astimezone(UTC)
    except ValueError:
        raise RowProblem(f"{field}: not a real date/time: {_show(value)}") from None


def _aware(value: datetime, field: str) -> datetime:
    if value.tzinfo is None:
        raise RowProblem(
            f"{field}: expected a timestamp with a UTC offset, got {value.isoformat()} "
            "(without an offset the instant is ambiguous)"
        )
    return value.astimezone(UTC)


def _show(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."
