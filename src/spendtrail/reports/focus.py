"""FOCUS 1.2 cost-and-usage export of the ledger (CSV or Parquet). Rules: docs/focus.md.

One row per (UTC day, provider, model, owner tag set, price entry, priced meter, unit price):
the current cost entry (highest revision) of every event in the period is split into its
priced meters, and the meters are summed into those rows. The query is streamed and summed
into a dict keyed by the row key, so memory grows with days x groups, never with events.

Money stays exact: quantities and costs are summed as integers (tokens, pico-units), unit
prices are the price entry's own, and ``ContractedUnitPrice x PricingQuantity =
ContractedCost`` (likewise List) holds exactly on every row. FOCUS cost columns cannot be
null and unpriced usage must never read as 0, so usage without a price is left out of the
rows and counted in the summary (``FocusSummary``) the command prints.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, localcontext
from pathlib import Path
from typing import Any, Literal, NamedTuple

import msgspec
import sqlalchemy as sa

from spendtrail.errors import SpendtrailError
from spendtrail.events.model import Usage
from spendtrail.ledger.costs import is_current
from spendtrail.ledger.db import as_utc
from spendtrail.ledger.prices import load_catalog
from spendtrail.ledger.schema import cost_entries, events
from spendtrail.money import from_pico, plain_decimal
from spendtrail.periods import Period
from spendtrail.pricing import TOKEN_METERS, Catalog, PriceEntry
from spendtrail.reports.focus_columns import ALLOWED, COLUMN_NAMES, COLUMNS, USAGE_REQUIRED

FocusFormat = Literal["csv", "parquet"]

OWNER_FIELDS = ("business_unit", "application", "environment", "workload_class",
                "cost_center", "budget_owner")
PRICED_STATUSES = ("priced", "incomplete")

# (ProviderName, ServiceName) of providers people route through; others use their ledger id.
PROVIDERS: dict[str, tuple[str, str]] = {
    "cometapi": ("CometAPI", "CometAPI"),
    "openai": ("OpenAI", "OpenAI API"),
    "anthropic": ("Anthropic", "Anthropic API"),
    "azure": ("Microsoft", "Azure OpenAI"),
    "google": ("Google", "Gemini API"),
    "mistral": ("Mistral AI", "Mistral API"),
    "openrouter": ("OpenRouter", "OpenRouter"),
}
# Model-name prefixes of the vendors that produce the models (PublisherName).
PUBLISHERS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("gpt", "chatgpt", "o1", "o3", "o4", "dall-e", "whisper", "tts-", "text-embedding",
      "davinci", "babbage", "omni-moderation", "sora"), "OpenAI"),
    (("claude",), "Anthropic"),
    (("gemini", "gemma", "imagen", "veo"), "Google"),
    (("llama", "meta-llama"), "Meta"),
    (("mistral", "mixtral", "codestral", "ministral", "pixtral", "magistral"), "Mistral AI"),
    (("deepseek",), "DeepSeek"),
    (("qwen", "qwq"), "Alibaba Cloud"),
    (("grok",), "xAI"),
    (("command", "embed-", "rerank-"), "Cohere"),
    (("kimi", "moonshot"), "Moonshot AI"),
    (("glm", "chatglm"), "Zhipu AI"),
)

# meter -> (SkuMeter / description words, ConsumedUnit, PricingUnit, units per PricingUnit)
METER_UNITS: dict[str, tuple[str, str, str, int]] = {
    **{m: (m.replace("_", " "), "Tokens", "1000000 Tokens", 1_000_000) for m in TOKEN_METERS},
    "requests": ("requests", "Requests", "Requests", 1),
    "images": ("images", "Images", "Images", 1),
    "seconds": ("seconds", "Seconds", "Seconds", 1),
}
_PICO_EXP = -12
_HALF_PICO = Decimal("0.5")


class FocusExportError(SpendtrailError):
    """The ledger holds something the export cannot state exactly; the message says what."""


@dataclass(frozen=True, slots=True)
class FocusOptions:
    billing_account_id: str | None = None  # default: the provider's ledger id
    billing_account_name: str | None = None
    invoice_issuer: str | None = None  # default: ProviderName (who sells also invoices)


@dataclass
class FocusSummary:
    """What the export covered, including what it could not put in cost rows."""

    period: Period
    rows: int = 0
    events: int = 0
    exported_events: int = 0  # events with at least one priced meter in the rows
    unpriced_events: int = 0  # no price entry: in no row
    incomplete_events: int = 0  # partly priced: priced meters exported, the rest in no row
    no_usage_events: int = 0  # nothing metered, nothing to charge
    unpriced_models: Counter[tuple[str, str]] = field(default_factory=Counter)
    cost_pico: dict[str, int] = field(default_factory=dict)  # BilledCost total per currency

    def cost(self) -> dict[str, Decimal]:
        return {cur: from_pico(p) for cur, p in sorted(self.cost_pico.items())}


class _RowKey(NamedTuple):
    """What makes one FOCUS row: a unit price is constant within it, so price x quantity
    stays exact after summing."""

    day: date
    provider: str
    model: str
    owner: tuple[str, ...]  # OWNER_FIELDS, '' for unset
    allocation_status: str
    entry_id: str
    meter: str
    unit_pico: int
    tier: int
    list_entry_id: str
    list_unit_pico: int


@dataclass(slots=True)
class _Sum:
    quantity: Decimal | int = 0
    cost_pico: int = 0
    events: int = 0


def focus_rows(
    conn: sa.Connection, period: Period, options: FocusOptions = FocusOptions()
) -> tuple[list[dict[str, Any]], FocusSummary]:
    """The export's rows (column name -> Python value) and its summary."""
    catalog = load_catalog(conn)
    entries = {entry.id: entry for entry in catalog.entries}
    summary = FocusSummary(period)
    sums: dict[_RowKey, _Sum] = {}
    stream = conn.execution_options(stream_results=True, yield_per=5000)
    for row in stream.execute(_current_costs(period)):
        summary.events += 1
        status = row.status
        if status not in PRICED_STATUSES:
            if status == "no_usage":
                summary.no_usage_events += 1
            else:  # unpriced, or an event without any cost entry
                summary.unpriced_events += 1
                summary.unpriced_models[(row.provider, row.model or "")] += 1
            continue
        if status == "incomplete":
            summary.incomplete_events += 1
            summary.unpriced_models[(row.provider, row.model)] += 1
        entry = entries.get(row.price_entry_id)
        if entry is None:
            raise FocusExportError(
                f"cost entry of event {row.event_id} names price entry "
                f"{row.price_entry_id!r}, which is not in the catalog"
            )
        _add_event(row, entry, catalog, sums)
        summary.exported_events += 1
    rows = [_focus_row(key, total, entries, options) for key, total in sorted(sums.items())]
    summary.rows = len(rows)
    for key, total in sums.items():
        currency = entries[key.entry_id].currency
        summary.cost_pico[currency] = summary.cost_pico.get(currency, 0) + total.cost_pico
    return rows, summary


def export_focus(
    engine: sa.Engine, period: Period, path: Path, fmt: FocusFormat,
    options: FocusOptions = FocusOptions(),
) -> FocusSummary:
    """Build, check (``check_rows`` is the gate) and write the export; returns its summary."""
    with engine.connect() as conn:
        rows, summary = focus_rows(conn, period, options)
    problems = check_rows(rows)
    if problems:
        shown = "; ".join(problems[:5])
        raise FocusExportError(f"{len(problems)} FOCUS rule violation(s), e.g. {shown}")
    if fmt == "csv":
        write_csv(rows, path)
    else:
        write_parquet(rows, path)
    return summary


# -- reading the ledger ------------------------------------------------------------------


def _current_costs(period: Period) -> sa.Select:
    """Each event of the period with its current cost entry (none: an outer-join null)."""
    e, c = events.c, cost_entries.c
    current = sa.and_(c.event_id == e.event_id, is_current())
    return (
        sa.select(
            e.event_id, e.day, e.started_at, e.provider,
            sa.func.coalesce(e.model_served, e.model_requested).label("model"),
            *(e[name] for name in OWNER_FIELDS), e.allocation_status, e.usage,
            c.status, c.price_entry_id, c.breakdown,
        )
        .select_from(events.outerjoin(cost_entries, current))
        .where(e.day >= period.start, e.day < period.end)
    )


_usage = msgspec.json.Decoder(Usage)


def _add_event(
    row: Any, entry: PriceEntry, catalog: Catalog, sums: dict[_RowKey, _Sum]
) -> None:
    usage = _usage.decode(row.usage)
    breakdown: dict[str, int] = json.loads(row.breakdown)
    leaves, tier = _leaves(usage, entry)
    at = as_utc(row.started_at)
    list_entry, list_leaves = _list_prices(catalog, entry, row.provider, row.model, usage, at)
    owner = tuple(getattr(row, name) or "" for name in OWNER_FIELDS)
    for meter, cost in breakdown.items():
        if meter not in leaves:
            raise FocusExportError(
                f"event {row.event_id}: its cost names meter {meter}, which price entry "
                f"{entry.id} does not price for its usage"
            )
        quantity, unit_pico = leaves[meter]
        exact = quantity * unit_pico
        # Only a fractional seconds meter is rounded (half-even, to a pico-unit; flagged by
        # the engine); every other meter's cost is the exact product.
        if abs(exact - cost) > (_HALF_PICO if meter == "seconds" else 0):
            raise FocusExportError(
                f"event {row.event_id}: {meter} costs {cost} pico-units in the ledger but "
                f"{exact} at entry {entry.id}'s price; reprice before exporting"
            )
        list_id, list_pico = (
            (list_entry.id, list_leaves[meter][1])
            if list_entry is not None and meter in list_leaves
            else (entry.id, unit_pico)
        )
        key = _RowKey(row.day, row.provider, row.model, owner, row.allocation_status,
                      entry.id, meter, unit_pico, tier, list_id, list_pico)
        total = sums.get(key)
        if total is None:
            total = sums[key] = _Sum()
        total.quantity += quantity
        total.cost_pico += cost
        total.events += 1


BASE_TIER = -1  # the entry's base prices, below every tier threshold


def _tier_prices(entry: PriceEntry, usage: Usage) -> tuple[dict[str, int], int]:
    """The engine's tier choice: the highest tier whose threshold total input exceeds."""
    for threshold, prices in entry.pico_tiers:
        if usage.input_tokens > threshold:
            return prices, threshold
    return entry.pico_prices, BASE_TIER


def _leaves(
    usage: Usage, entry: PriceEntry
) -> tuple[dict[str, tuple[Decimal | int, int]], int]:
    """meter -> (quantity billed, pico-units per unit), split as ``pricing.engine`` splits:
    a part with its own price is billed at it, one without at its parent's price."""
    prices, tier = _tier_prices(entry, usage)
    leaves: dict[str, tuple[Decimal | int, int]] = {}

    def split(parent: str, count: int, parts: tuple[tuple[str, int, bool], ...]) -> None:
        parent_price = prices.get(parent)
        rest = count
        for meter, part, own_line in parts:
            if not part:
                continue
            price = prices.get(meter)
            if price is None:
                if not own_line:
                    continue  # stays in the parent's count
                if parent_price is None:
                    rest -= part
                    continue
                price = parent_price
            leaves[meter] = (part, price)
            rest -= part
        if rest > 0 and parent_price is not None:
            leaves[parent] = (rest, parent_price)

    split("input_tokens", usage.input_tokens, (
        ("cached_input_tokens", usage.cached_input_tokens, True),
        ("cache_write_tokens", usage.cache_write_tokens, True),
        ("input_audio_tokens", usage.input_audio_tokens, True),
    ))
    split("output_tokens", usage.output_tokens, (
        ("reasoning_tokens", usage.reasoning_tokens, False),
        ("output_audio_tokens", usage.output_audio_tokens, True),
    ))
    for meter in ("requests", "images", "seconds"):
        amount = getattr(usage, meter)
        if amount and meter in prices:
            leaves[meter] = (amount, prices[meter])
    return leaves, tier


def _list_prices(
    catalog: Catalog, entry: PriceEntry, provider: str, model: str, usage: Usage, at: datetime
) -> tuple[PriceEntry | None, dict[str, tuple[Decimal | int, int]]]:
    """For a contracted price, the list entry in effect for the same provider and model at
    the same instant, and its per-meter prices for this usage."""
    if entry.kind == "list":
        return None, {}
    for candidate in catalog.candidates(provider, model):
        if candidate.kind == "list" and candidate.in_effect(at):
            return candidate, _leaves(usage, candidate)[0]
    return None, {}


# -- one FOCUS row -----------------------------------------------------------------------


def _focus_row(
    key: _RowKey, total: _Sum, entries: Mapping[str, PriceEntry], options: FocusOptions
) -> dict[str, Any]:
    day, provider, model, meter, tier = key.day, key.provider, key.model, key.meter, key.tier
    entry = entries[key.entry_id]
    words, consumed_unit, pricing_unit, per_unit = METER_UNITS[meter]
    provider_name, service_name = PROVIDERS.get(provider, (provider, f"{provider} API"))
    quantity = Decimal(total.quantity)
    pricing_quantity = quantity / per_unit  # exact: per_unit is a power of ten
    contracted_price = _unit_price(key.unit_pico, per_unit)
    list_price = _unit_price(key.list_unit_pico, per_unit)
    with localcontext() as ctx:
        ctx.prec = 60  # wide enough that these products are exact
        contracted_cost = contracted_price * pricing_quantity
        list_cost = list_price * pricing_quantity
    billed = _plain(from_pico(total.cost_pico))
    tags = {name: value for name, value in zip(OWNER_FIELDS, key.owner, strict=True) if value}
    tags["allocation_status"] = key.allocation_status
    sku_id = f"{model}:{meter}"
    price_id = f"{provider}:{sku_id}:{entry.kind}" + (f":above-{tier}" if tier != BASE_TIER else "")
    month_start = day.replace(day=1)
    row: dict[str, Any] = dict.fromkeys(COLUMN_NAMES)
    row.update({
        "BilledCost": billed,
        "BillingAccountId": options.billing_account_id or provider,
        "BillingAccountName": options.billing_account_name,
        "BillingAccountType": "Billing Account",
        "BillingCurrency": entry.currency,
        "BillingPeriodStart": _midnight(month_start),
        "BillingPeriodEnd": _midnight(_next_month(month_start)),
        "ChargeCategory": "Usage",
        "ChargeDescription": f"{model} {words} via {provider_name}",
        "ChargeFrequency": "Usage-Based",
        "ChargePeriodStart": _midnight(day),
        "ChargePeriodEnd": _midnight(day + timedelta(days=1)),
        "ConsumedQuantity": quantity,
        "ConsumedUnit": consumed_unit,
        "ContractedCost": _plain(contracted_cost),
        "ContractedUnitPrice": contracted_price,
        "EffectiveCost": billed,
        "InvoiceIssuerName": options.invoice_issuer or provider_name,
        "ListCost": _plain(list_cost),
        "ListUnitPrice": list_price,
        "PricingCategory": "Standard",
        "PricingQuantity": _plain(pricing_quantity),
        "PricingUnit": pricing_unit,
        "ProviderName": provider_name,
        "PublisherName": publisher_of(model) or provider_name,
        "ServiceCategory": "AI and Machine Learning",
        "ServiceName": service_name,
        "ServiceSubcategory": "Generative AI",
        "SkuId": sku_id,
        "SkuMeter": words.title(),
        "SkuPriceId": price_id,
        "Tags": tags,
        "x_Meter": meter,
        "x_PriceEntryId": entry.id,
        "x_PriceKind": entry.kind,
        "x_PriceSourceUrl": entry.source_url,
        "x_ListPriceEntryId": key.list_entry_id,
        "x_AllocationStatus": key.allocation_status,
        "x_EventCount": total.events,
    })
    return row


def publisher_of(model: str) -> str | None:
    """The vendor that made a model, from its name ("openai/gpt-4o" and "gpt-4o" alike)."""
    name = model.lower().rsplit("/", 1)[-1]
    for prefixes, publisher in PUBLISHERS:
        if name.startswith(prefixes):
            return publisher
    return None


def _unit_price(pico_per_unit: int, per_unit: int) -> Decimal:
    return _plain(Decimal(pico_per_unit * per_unit).scaleb(_PICO_EXP))


def _plain(value: Decimal) -> Decimal:
    """Without trailing zeros; integral values keep exponent 0 so they print without E."""
    normal = value.normalize()
    return normal.quantize(Decimal(1)) if normal.as_tuple().exponent > 0 else normal


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


def _next_month(first: date) -> date:
    return date(first.year + first.month // 12, first.month % 12 + 1, 1)


# -- checking ----------------------------------------------------------------------------


def check_rows(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """FOCUS 1.2 rules per row: columns, nulls, allowed values, types, and unit price x
    PricingQuantity = cost. Empty when every row conforms."""
    return [f"row {number}: {problem}"
            for number, row in enumerate(rows, 1) for problem in _row_problems(row)]


def _row_problems(row: Mapping[str, Any]) -> list[str]:
    if tuple(row) != COLUMN_NAMES:
        return ["columns differ from the FOCUS 1.2 column list"]
    problems: list[str] = []
    for column in COLUMNS:
        value = row[column.name]
        if value is None:
            if not column.nullable or (
                row["ChargeCategory"] == "Usage" and column.name in USAGE_REQUIRED
            ):
                problems.append(f"{column.name} is null")
        elif not _has_kind(value, column.kind):
            problems.append(f"{column.name} is not a {column.kind}")
        elif column.name in ALLOWED and value not in ALLOWED[column.name]:
            problems.append(f"{column.name} {value!r} is not allowed")
    if problems:
        return problems  # the arithmetic needs well-typed values
    with localcontext() as ctx:
        ctx.prec = 60  # wide enough that the products are exact
        for price, cost in (("ListUnitPrice", "ListCost"),
                            ("ContractedUnitPrice", "ContractedCost")):
            if row[price] is not None and row[price] * row["PricingQuantity"] != row[cost]:
                problems.append(f"{price} x PricingQuantity != {cost}")
    return problems


def _has_kind(value: Any, kind: str) -> bool:
    if kind == "decimal":
        return isinstance(value, Decimal) and value.is_finite()
    if kind == "datetime":
        return isinstance(value, datetime) and value.utcoffset() is not None \
            and not value.utcoffset()
    if kind == "json":
        return isinstance(value, dict)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, str) and value != ""


# -- writing -----------------------------------------------------------------------------


def _cell(value: Any) -> str:
    """CSV text: decimals as plain digits (never float, never an exponent), UTC times with Z,
    JSON compact, null empty."""
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return plain_decimal(value)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)


def write_csv(rows: Iterable[Mapping[str, Any]], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(COLUMN_NAMES)
        writer.writerows([_cell(row[name]) for name in COLUMN_NAMES] for row in rows)


PARQUET_DECIMAL = (38, 18)  # 20 integer digits; 18 places hold a pico price x a quantity
_BATCH = 4096


def write_parquet(rows: list[Mapping[str, Any]], path: Path) -> None:
    """decimal128 for every Decimal column (exact), timestamp[us, UTC], JSON as text."""
    try:
        import pyarrow as pa  # heavy; only this format needs it
        import pyarrow.parquet as pq
    except ImportError:
        raise FocusExportError("--format parquet needs pyarrow: pip install pyarrow") from None
    types = {
        "string": pa.string(), "json": pa.string(), "integer": pa.int64(),
        "decimal": pa.decimal128(*PARQUET_DECIMAL), "datetime": pa.timestamp("us", tz="UTC"),
    }
    schema = pa.schema([pa.field(c.name, types[c.kind], nullable=c.nullable) for c in COLUMNS])
    json_columns = {c.name for c in COLUMNS if c.kind == "json"}
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, max(len(rows), 1), _BATCH):
            chunk = rows[start:start + _BATCH]
            columns = {
                name: [_cell(r[name]) if name in json_columns and r[name] is not None
                       else r[name] for r in chunk]
                for name in COLUMN_NAMES
            }
            writer.write_table(pa.table(columns, schema=schema))
