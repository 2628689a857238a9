"""FOCUS cost-and-usage export of the ledger (CSV or Parquet), FOCUS 1.3 by default, 1.2 and
1.4 on request, with the FOCUS metadata beside it. Rules: docs/focus.md.

One row per (UTC day, provider, model, owner tag set, price entry, priced meter, unit price):
the current cost entry (highest revision) of every event in the period is split into its
priced meters, and the meters are summed into those rows (``focus_sums``: streamed, so
memory grows with days x groups, never with events; a large month in worker processes).

Money stays exact: quantities and costs are summed as integers (tokens, pico-units), unit
prices are the price entry's own, and ``ContractedUnitPrice x PricingQuantity =
ContractedCost`` (likewise List) holds exactly on every row. FOCUS cost columns cannot be
null and unpriced usage must never read as 0, so usage without a price is left out of the
rows and counted in the summary (``FocusSummary``) the command prints.

Owners: an event the exception queue reassigned is exported under the owner it was assigned
to; a quarantined one under no owner at all (the registry rejected its claim). Both keep the
claim as captured in ``x_ClaimedOwner``. From 1.3, a pool's rows that a shared-cost rule
splits are written as split cost allocation: one allocated row per recipient and origin row,
its cost the recipient's share dealt exactly from the period's allocation entries
(``focus_allocation``), so a recipient's rows add up to its shared entry to the pico-unit.
The true-up to the reconciled bill is one ``Adjustment`` row per owner share, with the
bill's InvoiceId: summed by owner, the export gives each owner its statement's figure.

A closed month's export is the one taken at its close (``snapshot_document``, stored by
``spendtrail close``; ``closed_rows`` reads it back), so late events and repricings do not
change it.
"""

from __future__ import annotations

import csv
import hashlib
import json
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, localcontext
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import msgspec
import sqlalchemy as sa

from spendtrail.allocation.entries import PeriodEntries, period_entries
from spendtrail.allocation.shared import ratio_text
from spendtrail.events.model import OWNER_FIELDS
from spendtrail.ledger.allocation_entries import load_snapshot
from spendtrail.ledger.prices import load_catalog
from spendtrail.ledger.registry_versions import load_history
from spendtrail.ledger.retention import require_raw_rows
from spendtrail.ledger.schema import (
    bill_imports,
    reconciliations,
)
from spendtrail.money import from_pico, plain_decimal
from spendtrail.periods import Period
from spendtrail.pricing import TOKEN_METERS, PriceEntry
from spendtrail.reports.focus_allocation import (
    METHOD_UNITS,
    Recipient,
    Shares,
    Split,
    shared_splits,
)
from spendtrail.reports.focus_columns import (
    ALLOWED,
    COLUMN_NAMES,
    COLUMNS,
    DEFAULT_VERSION,
    FOCUS_VERSIONS,
    USAGE_REQUIRED,
)
from spendtrail.reports.focus_sums import (
    BASE_TIER,
    EventCounts,
    FocusExportError,
    RowKey,
    Sum,
    event_sums,
)

FocusFormat = Literal["csv", "parquet"]

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
# Providers that resell other vendors' models: the vendor hosts the model (HostProviderName).
ROUTERS = frozenset({"cometapi", "openrouter"})
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


@dataclass(frozen=True, slots=True)
class FocusOptions:
    billing_account_id: str | None = None  # default: the provider's ledger id
    billing_account_name: str | None = None  # default: "<ServiceProviderName> account"
    invoice_issuer: str | None = None  # default: ProviderName (who sells also invoices)
    version: str = DEFAULT_VERSION

    def __post_init__(self) -> None:
        if self.version not in FOCUS_VERSIONS:
            raise FocusExportError(
                f"FOCUS version {self.version!r}: expected one of {', '.join(FOCUS_VERSIONS)}")


@dataclass(kw_only=True)
class FocusSummary(EventCounts):
    """What the export covered, including what it could not put in cost rows."""

    period: Period
    rows: int = 0
    cost_pico: dict[str, int] = field(default_factory=dict)  # BilledCost total per currency
    closed: bool = False  # read from the snapshot taken when the month was closed

    def cost(self) -> dict[str, Decimal]:
        return {cur: from_pico(p) for cur, p in sorted(self.cost_pico.items())}


def focus_rows(
    conn: sa.Connection, period: Period, options: FocusOptions = FocusOptions()
) -> tuple[list[dict[str, Any]], FocusSummary]:
    """The export's rows (column name -> Python value) and its summary, from the ledger as
    it is now (``export_focus`` reads a closed month's snapshot instead)."""
    sums, summary, entries = _read(conn, period)
    rows = _rows(conn, period, sums, entries, options)
    summary.rows = len(rows)
    return rows, summary


def _read(
    conn: sa.Connection, period: Period
) -> tuple[dict[RowKey, Sum], FocusSummary, dict[str, PriceEntry]]:
    """The period's events summed by row key, the summary (cost per currency set, row count
    not), and the catalog's entries by id."""
    require_raw_rows(conn, period, "the FOCUS export")
    catalog = load_catalog(conn)
    entries = {entry.id: entry for entry in catalog.entries}
    sums, counts = event_sums(conn, period, catalog)
    summary = FocusSummary(period=period, **vars(counts))
    for key, total in sums.items():
        currency = entries[key.entry_id].currency
        summary.cost_pico[currency] = summary.cost_pico.get(currency, 0) + total.cost_pico
    return sums, summary, entries


def _rows(
    conn: sa.Connection, period: Period, sums: Mapping[RowKey, Sum],
    entries: Mapping[str, PriceEntry], options: FocusOptions,
) -> list[dict[str, Any]]:
    allocation = period_entries(conn, period)
    context = _Context(options, entries, _invoices(conn, period),
                       [] if options.version == "1.2" else shared_splits(allocation),
                       _registry_owners(conn), Shares())
    rows = [row for key, total in sorted(sums.items())
            for row in _focus_rows(key, total, context)]
    return rows + _true_up_rows(conn, allocation, period, context)


def export_focus(
    engine: sa.Engine, period: Period, path: Path, fmt: FocusFormat,
    options: FocusOptions = FocusOptions(),
) -> FocusSummary:
    """Build, check (``check_rows`` is the gate) and write the export; returns its summary.
    A closed month's export is the one taken at its close (``closed_rows``)."""
    with engine.connect() as conn:
        found = closed_rows(conn, period, options)
        rows, summary = found if found is not None else focus_rows(conn, period, options)
    problems = check_rows(rows, options.version)
    if problems:
        shown = "; ".join(problems[:5])
        raise FocusExportError(f"{len(problems)} FOCUS rule violation(s), e.g. {shown}")
    if fmt == "csv":
        write_csv(rows, path, options.version)
    else:
        write_parquet(rows, path, options.version)
    write_metadata(path, len(rows), options.version)
    return summary


# -- a closed month's export -------------------------------------------------------------

# Stored with the month's statement snapshots (``ledger.allocation_entries``), under this
# scope and format: reopening the month drops it with them.
SNAPSHOT_SCOPE, SNAPSHOT_FORMAT = "FOCUS", "json"
# The billing options only replace their column's default (see ``_focus_row``), so a
# snapshot taken with the defaults gives any options' rows exactly.
_OPTION_COLUMNS = (("billing_account_id", "BillingAccountId"),
                   ("billing_account_name", "BillingAccountName"),
                   ("invoice_issuer", "InvoiceIssuerName"))
_snapshot_json = msgspec.json.Encoder(decimal_format="number")
_snapshot_read = msgspec.json.Decoder(float_hook=Decimal)  # numbers with a point: exact


def snapshot_document(conn: sa.Connection, period: Period) -> bytes:
    """The month's export as it reads now, for ``spendtrail close`` to store: the rows of
    every FOCUS version with the default options (one pass over the events) and the
    summary."""
    sums, summary, entries = _read(conn, period)
    rows = {version: _rows(conn, period, sums, entries, FocusOptions(version=version))
            for version in FOCUS_VERSIONS}
    return _snapshot_json.encode({
        "summary": {
            "events": summary.events, "exported_events": summary.exported_events,
            "unpriced_events": summary.unpriced_events,
            "incomplete_events": summary.incomplete_events,
            "no_usage_events": summary.no_usage_events,
            "unpriced_models": sorted([*key, count]
                                      for key, count in summary.unpriced_models.items()),
            "cost_pico": summary.cost_pico,
        },
        "rows": {version: [[row[name] for name in COLUMN_NAMES[version]] for row in found]
                 for version, found in rows.items()},
    })


def closed_rows(
    conn: sa.Connection, period: Period, options: FocusOptions = FocusOptions()
) -> tuple[list[dict[str, Any]], FocusSummary] | None:
    """A closed month's rows and summary as they were at its close (None: no snapshot)."""
    found = load_snapshot(conn, period.label, SNAPSHOT_SCOPE, SNAPSHOT_FORMAT)
    if found is None:
        return None
    document = _snapshot_read.decode(found[0])
    known = document["summary"]
    summary = FocusSummary(
        period=period, events=known["events"], exported_events=known["exported_events"],
        unpriced_events=known["unpriced_events"], incomplete_events=known["incomplete_events"],
        no_usage_events=known["no_usage_events"],
        unpriced_models=Counter({(provider, model): count
                                 for provider, model, count in known["unpriced_models"]}),
        cost_pico=known["cost_pico"], closed=True)
    summary.rows = len(document["rows"][options.version])
    chosen = {column: value for option, column in _OPTION_COLUMNS
              if (value := getattr(options, option)) is not None}
    columns = COLUMNS[options.version]
    rows = []
    for cells in document["rows"][options.version]:
        row = {column.name: _stored(cell, column.kind)
               for column, cell in zip(columns, cells, strict=True)}
        row.update(chosen)
        rows.append(row)
    return rows, summary


def _stored(cell: Any, kind: str) -> Any:
    """A snapshot cell back as the value ``_focus_row`` made."""
    if cell is None:
        return None
    if kind == "decimal":
        return Decimal(cell)  # an integral value comes back as an int
    if kind == "datetime":
        return datetime.fromisoformat(cell)
    return cell


# -- reading the ledger ------------------------------------------------------------------


def _invoices(conn: sa.Connection, period: Period) -> dict[str, list[tuple[date, date, str]]]:
    """provider -> (start, end, InvoiceId) of each passing reconciliation overlapping the
    period, latest first: its bill is the invoice the provider's charges of those days are on.
    The id is the reconciled bill file's SHA-256 (its first 16 hex digits)."""
    r, b = reconciliations.c, bill_imports.c
    found: dict[str, list[tuple[date, date, str]]] = {}
    for provider, start, end, sha256 in conn.execute(
        sa.select(r.provider, r.period_start, r.period_end, b.sha256)
        .join(bill_imports, b.id == r.bill_import_id)
        .where(r.result == "pass", r.period_start < period.end, r.period_end > period.start)
        .order_by(r.id.desc())
    ):
        found.setdefault(provider, []).append((start, end, f"sha256:{sha256[:16]}"))
    return found


def _registry_owners(conn: sa.Connection) -> dict[str, tuple[str, dict[str, str]]]:
    """Application id -> (name, owner tags) in the latest registry: AllocatedResourceName and
    AllocatedTags of the rows allocated to it."""
    latest = load_history(conn).latest()
    if latest is None:
        return {}
    registry = latest[1]
    return {
        app.id: (app.name, {"business_unit": app.business_unit, "application": app.id,
                            "cost_center": app.cost_center, "budget_owner": app.budget_owner})
        for app in (*registry.applications.values(), registry.shared_pool)
    }


# -- one FOCUS row -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Context:
    options: FocusOptions
    entries: Mapping[str, PriceEntry]
    invoices: Mapping[str, list[tuple[date, date, str]]]
    splits: list[Split]
    owners: Mapping[str, tuple[str, dict[str, str]]]
    shares: Shares

    def invoice_id(self, provider: str, day: date) -> str | None:
        for start, end, invoice in self.invoices.get(provider, ()):
            if start <= day < end:
                return invoice
        return None

    def split(self, key: RowKey, currency: str) -> Split | None:
        pool = key.owner[OWNER_FIELDS.index("application")]
        if key.allocation_status not in ("allocated", "shared") or not pool:
            return None
        return next((s for s in self.splits if s.covers(pool, currency, key.day)), None)


def _focus_rows(key: RowKey, total: Sum, context: _Context) -> list[dict[str, Any]]:
    """The row for one key; from 1.3, one allocated row per recipient when a shared-cost rule
    splits the key's pool (each a ratio of the origin row, exactly; together the origin)."""
    row = _focus_row(key, total, context)
    found = context.split(key, row["BillingCurrency"])
    if found is None:
        return [row]
    parts = context.shares.deal(found, total.cost_pico)
    # A recipient with a zero share (no direct cost in a proportional segment) gets no row.
    return [_allocated(row, found, recipient, part, context)
            for recipient, part in zip(found.recipients, parts, strict=True)
            if recipient.ratio or part]


def _allocated(
    origin: dict[str, Any], found: Split, recipient: Recipient, part_pico: int,
    context: _Context,
) -> dict[str, Any]:
    ratio = recipient.ratio
    row = dict(origin)
    with localcontext() as ctx:
        ctx.prec = 80  # products of exact decimals stay exact
        for column in ("ListCost", "ContractedCost", "PricingQuantity", "ConsumedQuantity"):
            row[column] = _plain(origin[column] * ratio)
    # What the recipient is charged: its dealt share, so its rows add up to its entry.
    row["BilledCost"] = row["EffectiveCost"] = _plain(from_pico(part_pico))
    name, owner = context.owners.get(
        recipient.application, (recipient.application, {"application": recipient.application}))
    row.update({
        "AllocatedMethodId": f"spendtrail-shared-cost/{found.method}",
        "AllocatedMethodDetails": {
            "Elements": [{"AllocatedRatio": _plain(ratio),
                          "UsageUnit": METHOD_UNITS.get(found.method, found.method),
                          "x_ExactRatio": str(recipient.exact)}],
            "x_OriginChargeId": found.origin_id,
            "x_RuleId": found.rule_id,
            "x_RulesVersion": found.rules_version,
        },
        "AllocatedResourceId": recipient.application,
        "AllocatedResourceName": name,
        "AllocatedTags": owner,
    })
    if "InvoiceDetailId" in row and row["InvoiceId"] is not None:
        row["InvoiceDetailId"] = _detail_id(origin["InvoiceDetailId"], recipient.application)
    return row


def _true_up_rows(conn: sa.Connection, allocation: PeriodEntries, period: Period,
                  context: _Context) -> list[dict[str, Any]]:
    """One Adjustment row per true-up entry: the owner's share of the reconciled variance,
    on the reconciled bill's invoice."""
    ups = allocation.of("true_up")
    if not ups:
        return []
    r, b = reconciliations.c, bill_imports.c
    bills, providers = {}, {}
    for record_id, provider, sha256 in conn.execute(
        sa.select(r.id, r.provider, b.sha256).join(bill_imports, b.id == r.bill_import_id)
        .where(r.id.in_([e.reconciliation_id for e in ups]))):
        bills[record_id], providers[record_id] = f"sha256:{sha256[:16]}", provider
    month_start = period.start.replace(day=1)
    rows = []
    for entry in ups:
        provider = providers[entry.reconciliation_id]
        provider_name, service_name = PROVIDERS.get(provider, (provider, f"{provider} API"))
        name, tags = context.owners.get(entry.application,
                                        (entry.application, {"application": entry.application}))
        amount = _plain(from_pico(entry.amount_pico))
        values: dict[str, Any] = {
            "BilledCost": amount, "EffectiveCost": amount,
            "ContractedCost": amount, "ListCost": amount,
            "BillingAccountId": context.options.billing_account_id or provider,
            "BillingAccountName": context.options.billing_account_name
            or f"{provider_name} account",
            "BillingAccountType": "Billing Account",
            "BillingCurrency": entry.currency,
            "BillingPeriodStart": _midnight(month_start),
            "BillingPeriodEnd": _midnight(_next_month(month_start)),
            "ChargeCategory": "Adjustment",
            "ChargeDescription": f"true-up to the reconciled bill ({entry.origin}): "
                                 f"{entry.detail}",
            "ChargeFrequency": "One-Time",
            "ChargePeriodStart": _midnight(period.start),
            "ChargePeriodEnd": _midnight(period.end),
            "HostProviderName": provider_name,
            "InvoiceId": bills[entry.reconciliation_id],
            "InvoiceDetailId": _detail_id(bills[entry.reconciliation_id], "true-up",
                                          entry.application),
            "InvoiceIssuerName": context.options.invoice_issuer or provider_name,
            "ProviderName": provider_name, "PublisherName": provider_name,
            "ServiceCategory": "AI and Machine Learning", "ServiceName": service_name,
            "ServiceProviderName": provider_name, "ServiceSubcategory": "Generative AI",
            "Tags": {**tags, "allocation_status": "allocated"},
            "AllocatedMethodId": f"spendtrail-true-up/{entry.method}",
            "AllocatedMethodDetails": {
                "Elements": [{"AllocatedRatio": Decimal(ratio_text(Fraction(entry.ratio))),
                              "UsageUnit": "Matched Billed Cost",
                              "x_ExactRatio": entry.ratio}],
                "x_ReconciliationId": entry.reconciliation_id},
            "AllocatedResourceId": entry.application,
            "AllocatedResourceName": name,
            "AllocatedTags": tags,
            "x_Meter": "true_up",
            "x_PriceEntryId": f"reconciliation:{entry.reconciliation_id}",
            "x_PriceKind": "bill",
            "x_PriceSourceUrl": bills[entry.reconciliation_id],
            "x_ListPriceEntryId": f"reconciliation:{entry.reconciliation_id}",
            "x_AllocationStatus": "allocated",
            "x_EventCount": 0,
        }
        rows.append({column: values.get(column) for column in COLUMN_NAMES[
            context.options.version]})
    return rows


def _focus_row(key: RowKey, total: Sum, context: _Context) -> dict[str, Any]:
    options = context.options
    day, provider, model, meter, tier = key.day, key.provider, key.model, key.meter, key.tier
    entry = context.entries[key.entry_id]
    words, consumed_unit, pricing_unit, per_unit = METER_UNITS[meter]
    provider_name, service_name = PROVIDERS.get(provider, (provider, f"{provider} API"))
    publisher = publisher_of(model) or provider_name
    quantity = Decimal(total.quantity)
    pricing_quantity = quantity / per_unit  # exact: per_unit is a power of ten
    contracted_price = _unit_price(key.unit_pico, per_unit)
    list_price = _unit_price(key.list_unit_pico, per_unit)
    with localcontext() as ctx:
        ctx.prec = 60  # wide enough that these products are exact
        contracted_cost = contracted_price * pricing_quantity
        list_cost = list_price * pricing_quantity
    billed = _plain(from_pico(total.cost_pico))
    tags: dict[str, Any] = {
        name: value for name, value in zip(OWNER_FIELDS, key.owner, strict=True) if value}
    tags["allocation_status"] = key.allocation_status
    claimed = {name: value for name, value in zip(OWNER_FIELDS, key.claimed, strict=False)
               if value}
    sku_id = f"{model}:{meter}"
    price_id = f"{provider}:{sku_id}:{entry.kind}" + (f":above-{tier}" if tier != BASE_TIER else "")
    month_start = day.replace(day=1)
    account = options.billing_account_id or provider
    invoice = context.invoice_id(provider, day)
    values: dict[str, Any] = {
        "BilledCost": billed,
        "BillingAccountId": account,
        "BillingAccountName": options.billing_account_name or f"{provider_name} account",
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
        "HostProviderName": publisher if provider in ROUTERS else provider_name,
        "InvoiceDetailId": None if invoice is None else _detail_id(invoice, *map(str, key)),
        "InvoiceId": invoice,
        "InvoiceIssuerName": options.invoice_issuer or provider_name,
        "ListCost": _plain(list_cost),
        "ListUnitPrice": list_price,
        "PricingCategory": "Standard",
        "PricingQuantity": _plain(pricing_quantity),
        "PricingUnit": pricing_unit,
        "ProviderName": provider_name,
        "PublisherName": publisher,
        "ServiceCategory": "AI and Machine Learning",
        "ServiceName": service_name,
        "ServiceProviderName": provider_name,
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
        "x_ClaimedOwner": claimed or None,
        "x_EventCount": total.events,
    }
    names = COLUMN_NAMES[options.version]
    return {name: values.get(name) for name in names}


def _detail_id(*parts: str) -> str:
    """A stable id for one row within its invoice (InvoiceDetailId, FOCUS 1.4)."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:20]


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


def check_rows(
    rows: Iterable[Mapping[str, Any]], version: str = DEFAULT_VERSION
) -> list[str]:
    """The version's rules per row: columns, nulls, allowed values, types, and unit price x
    PricingQuantity = cost. Empty when every row conforms."""
    return [f"row {number}: {problem}"
            for number, row in enumerate(rows, 1) for problem in _row_problems(row, version)]


def _row_problems(row: Mapping[str, Any], version: str) -> list[str]:
    if tuple(row) != COLUMN_NAMES[version]:
        return [f"columns differ from the FOCUS {version} column list"]
    problems: list[str] = []
    for column in COLUMNS[version]:
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


# JSON compact with sorted keys; decimals as JSON numbers, digit for digit.
_json = msgspec.json.Encoder(decimal_format="number", order="sorted")


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
        return _json.encode(value).decode()
    return str(value)


def write_csv(
    rows: Iterable[Mapping[str, Any]], path: Path, version: str = DEFAULT_VERSION
) -> None:
    names = COLUMN_NAMES[version]
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(names)
        writer.writerows([_cell(row[name]) for name in names] for row in rows)


# 14 integer digits; 24 places hold a pico price x a quantity x an allocated ratio (12 places)
PARQUET_DECIMAL = (38, 24)
_BATCH = 4096


def write_parquet(
    rows: list[Mapping[str, Any]], path: Path, version: str = DEFAULT_VERSION
) -> None:
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
    columns = COLUMNS[version]
    schema = pa.schema([pa.field(c.name, types[c.kind], nullable=c.nullable) for c in columns])
    json_columns = {c.name for c in columns if c.kind == "json"}
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, max(len(rows), 1), _BATCH):
            chunk = rows[start:start + _BATCH]
            columns = {
                name: [_cell(r[name]) if name in json_columns and r[name] is not None
                       else r[name] for r in chunk]
                for name in COLUMN_NAMES[version]
            }
            writer.write_table(pa.table(columns, schema=schema))


# -- metadata ----------------------------------------------------------------------------

DATA_GENERATOR = "spendtrail"
PARQUET_TYPES = {"string": "STRING", "json": "JSON", "integer": "DECIMAL",
                 "decimal": "DECIMAL", "datetime": "DATETIME"}


def metadata_paths(path: Path) -> dict[str, Path]:
    """The FOCUS metadata files written beside an export ``x.csv``: ``x.data_generator.json``,
    ``x.schema.json`` and ``x.metadata.json`` (the export's reference to its schema)."""
    stem = path.with_suffix("")
    return {part: stem.with_name(f"{stem.name}.{part}.json")
            for part in ("data_generator", "schema", "metadata")}


def schema_metadata(version: str, created: datetime) -> dict[str, Any]:
    """The FOCUS schema metadata object: SchemaId (a GUID derived from the columns, so the
    same structure keeps its id and any change gets a new one), FocusVersion, CreationDate,
    DataGeneratorVersion and one ColumnDefinition per column."""
    from importlib.metadata import version as package_version

    definitions = []
    for column in COLUMNS[version]:
        definition: dict[str, Any] = {"ColumnName": column.name,
                                      "DataType": PARQUET_TYPES[column.kind]}
        if column.kind == "decimal":
            definition["NumericPrecision"], definition["NumberScale"] = PARQUET_DECIMAL
        elif column.kind == "integer":
            definition["NumericPrecision"], definition["NumberScale"] = 19, 0
        elif column.kind in ("string", "json"):
            definition["StringEncoding"] = "UTF-8"
        definitions.append(definition)
    generator_version = package_version("spendtrail")
    structure = json.dumps([version, generator_version, definitions], sort_keys=True)
    return {
        "SchemaId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"spendtrail:focus:{structure}")),
        "FocusVersion": version,
        "CreationDate": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "DataGeneratorVersion": generator_version,
        "ColumnDefinition": definitions,
    }


def write_metadata(path: Path, rows: int, version: str) -> dict[str, Path]:
    """Write the export's FOCUS metadata files; returns their paths."""
    paths = metadata_paths(path)
    schema = schema_metadata(version, datetime.now(UTC))
    documents = {
        "data_generator": {"DataGenerator": DATA_GENERATOR},
        "schema": schema,
        "metadata": {
            "SchemaId": schema["SchemaId"],
            "SchemaReference": paths["schema"].name,
            "data_location": [{"filepath": path.name, "total_bytes": path.stat().st_size,
                               "total_rows": rows}],
        },
    }
    for part, document in documents.items():
        paths[part].write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return paths
