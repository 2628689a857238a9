"""FOCUS 1.2 cost-and-usage data, as CSV or Parquet.

All 21 Mandatory columns must be in the header (a missing one stops the file, naming it).
Per row, the non-nullable ones must hold a value, the four cost columns must be decimals,
``BillingCurrency`` ISO 4217, ``ChargeCategory`` one of Usage, Purchase, Tax, Credit,
Adjustment, ``ChargeClass`` null or Correction, and the four period columns ISO 8601 UTC
ending in Z (Parquet timestamp columns must carry a time zone). ``Tags`` is parsed as a JSON
object. A row's problems are reported together, each naming its column.

``amount`` is ``BilledCost`` (the invoice basis, which is what reconciliation against a bill
must sum); ``effective_amount`` is ``EffectiveCost`` (amortized). Costs keep their FOCUS sign,
so credits are already negative. Line: the CSV line, or the 1-based row number in Parquet
(0 for a problem with the file as a whole). Custom columns ``x_RequestId`` and ``x_ApiKeyId``
(spendtrail's own FOCUS export writes them) fill provider_request_id and key_name; a row with
a request id is a ``request`` line, any other a ``bucket``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from spendtrail.bills import values
from spendtrail.bills.csvrows import csv_records
from spendtrail.bills.model import BillFileError, BillLine, BillRowError, ChargeKind
from spendtrail.bills.values import RowProblem

MANDATORY = (
    "BilledCost", "BillingAccountId", "BillingAccountName", "BillingCurrency",
    "BillingPeriodEnd", "BillingPeriodStart", "ChargeCategory", "ChargeClass",
    "ChargeDescription", "ChargePeriodEnd", "ChargePeriodStart", "ContractedCost",
    "EffectiveCost", "InvoiceIssuerName", "ListCost", "PricingQuantity", "PricingUnit",
    "ProviderName", "PublisherName", "ServiceCategory", "ServiceName",
)
_NULLABLE = {"BillingAccountName", "ChargeClass", "ChargeDescription", "PricingQuantity",
             "PricingUnit"}
_TEXT = ("BillingAccountId", "InvoiceIssuerName", "ProviderName", "PublisherName",
         "ServiceCategory", "ServiceName")
_COSTS = ("BilledCost", "EffectiveCost", "ListCost", "ContractedCost")
_DATES = ("ChargePeriodStart", "ChargePeriodEnd", "BillingPeriodStart", "BillingPeriodEnd")
CHARGE_CATEGORIES: dict[str, ChargeKind] = {
    "Usage": "usage",
    "Purchase": "purchase",
    "Tax": "tax",
    "Credit": "credit",
    "Adjustment": "adjustment",
}
_BATCH_ROWS = 4096


def read_focus_csv(path: Path) -> Iterator[BillLine | BillRowError]:
    source = str(path)
    for record in csv_records(path, _check_columns):
        if isinstance(record, BillRowError):
            yield record
        else:
            yield _convert(record.cells, source, record.line, "focus-csv")


def read_focus_parquet(path: Path) -> Iterator[BillLine | BillRowError]:
    """Streams record batches of a few thousand rows; memory does not grow with the file."""
    source = str(path)
    try:
        import pyarrow.parquet as pq  # heavy; only this format needs it
    except ImportError:
        raise BillFileError("focus-parquet needs pyarrow: pip install pyarrow") from None
    try:
        parquet = pq.ParquetFile(path)
    except OSError as exc:  # pyarrow's errors (ArrowInvalid among them) are OSError/ValueError
        raise BillFileError(f"{source}: cannot read the Parquet file: {exc}") from None
    except ValueError as exc:
        yield BillRowError(source, 0, f"not a Parquet file: {exc}", fatal=True)
        return
    problem = _check_columns(parquet.schema_arrow.names)
    if problem:
        yield BillRowError(source, 0, problem, fatal=True)
        return
    number = 0
    try:
        for batch in parquet.iter_batches(batch_size=_BATCH_ROWS):
            for row in batch.to_pylist():
                number += 1
                yield _convert(row, source, number, "focus-parquet")
    except (OSError, ValueError) as exc:
        yield BillRowError(source, number + 1, f"unreadable Parquet data: {exc}", fatal=True)


def _check_columns(header: list[str]) -> str | None:
    present = set(header)
    missing = [name for name in MANDATORY if name not in present]
    if missing:
        return f"missing FOCUS 1.2 mandatory column(s): {', '.join(missing)}"
    return None


def _convert(row: dict[str, Any], source: str, line: int, fmt: str) -> BillLine | BillRowError:
    problems: list[str] = []

    def check(parse: Any, name: str) -> Any:
        try:
            return parse(row.get(name), name)
        except RowProblem as exc:
            problems.append(str(exc))
            return None

    for name in _TEXT:
        check(values.required_text, name)
    costs = {name: check(values.decimal, name) for name in _COSTS}
    dates = {name: check(values.utc_z, name) for name in _DATES}
    currency = check(values.currency, "BillingCurrency")
    kind = check(_category, "ChargeCategory")
    check(_charge_class, "ChargeClass")
    tags = check(values.json_object, "Tags")
    start, end = dates["ChargePeriodStart"], dates["ChargePeriodEnd"]
    if start and end and end <= start:
        problems.append("ChargePeriodEnd: expected a time after ChargePeriodStart")
    if problems:
        return BillRowError(source, line, "; ".join(problems))
    request_id = values.text(row.get("x_RequestId"))
    return BillLine(
        source=source,
        line=line,
        format=fmt,
        provider=values.required_text(row.get("ProviderName"), "ProviderName"),
        granularity="request" if request_id else "bucket",
        period_start=start,
        period_end=end,
        charge_kind=kind,
        usage=None,
        amount=costs["BilledCost"],
        effective_amount=costs["EffectiveCost"],
        currency=currency,
        provider_request_id=request_id,
        key_name=values.text(row.get("x_ApiKeyId")),
        project=values.text(row.get("SubAccountId")),
        description=values.text(row.get("ChargeDescription")),
        tags=tags,
        raw=row,
    )


def _category(value: Any, name: str) -> ChargeKind:
    category = values.required_text(value, name)
    if category not in CHARGE_CATEGORIES:
        allowed = ", ".join(CHARGE_CATEGORIES)
        raise RowProblem(f"{name}: expected one of {allowed}, got {category!r}")
    return CHARGE_CATEGORIES[category]


def _charge_class(value: Any, name: str) -> None:
    charge_class = values.text(value)
    if charge_class is not None and charge_class != "Correction":
        raise RowProblem(f"{name}: expected empty or 'Correction', got {charge_class!r}")
