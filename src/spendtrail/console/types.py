"""The typed values the console's reads return and its writes take (pydantic models, so the
HTTP API's OpenAPI document is generated from them). Amounts are exact decimal strings with
their currency, never floats."""

from __future__ import annotations

from dataclasses import fields
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal, get_type_hints

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model

from spendtrail.ledger.db import as_utc
from spendtrail.ledger.event_list import EventRow
from spendtrail.money import from_pico, plain_decimal
from spendtrail.reports.rounding import minor_unit, to_units

# A moment in time, always with its UTC offset (SQLite hands back naive UTC datetimes).
Moment = Annotated[datetime, AfterValidator(as_utc)]


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Amount(Model):
    currency: str
    amount: str = Field(description="Exact decimal, e.g. '12.345678'.")


def amounts(pico: dict[str, int]) -> list[Amount]:
    return [
        Amount(currency=cur, amount=plain_decimal(from_pico(p)))
        for cur, p in sorted(pico.items())
        if cur
    ]


def amount(pico: int, currency: str) -> Amount:
    return Amount(currency=currency, amount=plain_decimal(from_pico(pico)))


def rounded(pico: dict[str, int]) -> list[Amount]:
    """An estimate, not a sum of lines: each currency's figure to its minor unit."""
    shown = []
    for cur, p in sorted(pico.items()):
        if cur:
            places = minor_unit(cur)
            units = Decimal(to_units(p, places)).scaleb(-places)
            shown.append(Amount(currency=cur, amount=f"{units:f}"))
    return shown


# --- who -------------------------------------------------------------------------------


class Me(Model):
    name: str
    role: str
    scope: list[str] = Field(description="'*' for every owner, else kind:id items.")
    csrf_token: str | None = Field(
        None, description="Send as X-CSRF-Token on writes made with the session cookie."
    )


class UserItem(Model):
    name: str
    role: str
    scope: list[str]
    created_at: Moment
    disabled: bool


# --- spend -----------------------------------------------------------------------------


class SpendRow(Model):
    key: dict[str, str]
    events: int
    successes: int
    unpriced_events: int
    input_tokens: int
    output_tokens: int
    cost: list[Amount]


class SpendReport(Model):
    period: str
    group_by: list[str]
    filters: dict[str, str]
    rows: list[SpendRow]
    total: SpendRow
    quarantined: SpendRow
    shared: SpendRow


# An event as the ledger lists it (``ledger.event_list.EventRow``), its fields declared once
# there; its currency and pico-units come as one exact ``cost``.
EVENT_FIELDS = tuple(f.name for f in fields(EventRow) if f.name not in ("currency", "amount_pico"))
_EVENT_TYPES = get_type_hints(EventRow)
EventItem = create_model(
    "EventItem",
    __base__=Model,
    **{
        name: (Moment if _EVENT_TYPES[name] is datetime else _EVENT_TYPES[name], ...)
        for name in EVENT_FIELDS
    },
    cost=(Amount | None, ...),
)


def event_item(row: EventRow) -> BaseModel:
    cost = (
        None
        if row.currency is None or row.amount_pico is None
        else amount(row.amount_pico, row.currency)
    )
    return EventItem(**{name: getattr(row, name) for name in EVENT_FIELDS}, cost=cost)


class EventPage(Model):
    period: str
    filters: dict[str, str]
    total: int
    offset: int
    events: list[EventItem]


class BudgetBrief(Model):
    id: str
    scope: str
    period: str
    spent: str
    limit: str
    percent: int
    state: str


class ReconciliationBrief(Model):
    id: int
    period: str
    provider: str
    result: str
    variance: Amount
    created_at: Moment


class AlertDelivery(Model):
    channel: str
    status: str = Field(description="The latest attempt's: delivered, retrying or failed.")
    attempts: int
    at: Moment


class AlertItem(Model):
    id: int
    kind: str
    title: str
    message: str
    period: str | None
    owner: str = Field(description="Whom it is about: 'application=ID, ...' or 'company'.")
    created_at: Moment
    details: dict[str, str]
    deliveries: list[AlertDelivery] = Field(
        description="Per channel, its latest attempt; empty while none was made."
    )


class Overview(Model):
    as_of: date
    month: str
    month_to_date: list[Amount]
    same_days_last_month: list[Amount]
    forecast_month_end: list[Amount] = Field(
        description="Month-to-date spend at its daily rate so far, to the month's end, "
        "rounded to the currency's minor unit (an estimate, not an exact amount)."
    )
    unpriced_events: int
    unallocated: list[Amount] = Field(description="Quarantined spend this month.")
    allocation_coverage: str | None = Field(
        None, description="Share of this month's cost allocated (every-owner users only)."
    )
    budgets_nearest_limit: list[BudgetBrief]
    open_exceptions: int | None
    open_follow_ups: int | None
    latest_reconciliation: ReconciliationBrief | None
    alerts_this_month: int = Field(description="Alerts raised this month in the user's view.")
    latest_alerts: list[AlertItem]


# --- exceptions ------------------------------------------------------------------------


class ExceptionItem(Model):
    id: str
    reasons: str
    captured_application: str
    events: int
    unpriced: int
    oldest: Moment
    age_days: int
    amount: list[Amount]


class ExceptionEvent(Model):
    event_id: str
    started_at: Moment
    model: str | None
    cost_status: str | None
    cost: Amount | None


class ExceptionDetail(Model):
    group: ExceptionItem
    events: list[ExceptionEvent]
    resolutions: list[dict[str, str]]


class AssignRequest(Model):
    application: str = Field(min_length=1, max_length=200)
    reason: str = Field(min_length=1, max_length=2000)


class ResolveRequest(Model):
    note: str = Field(min_length=1, max_length=2000)


class AssignResult(Model):
    application: str
    events: int
    amount: list[Amount]
    unpriced: int
    groups: list[str]


# --- reconciliation --------------------------------------------------------------------


class ReconciliationRun(Model):
    id: int
    period: str
    provider: str
    bill_id: int
    bill_file: str
    method: str
    reviewer: str
    created_at: Moment
    created_by: str
    result: str
    reasons: list[str]
    tolerance_percent: str
    logged: Amount
    billed: Amount
    variance: Amount
    counts: dict[str, int]


class DifferenceItem(Model):
    kind: str
    day: date | None
    provider_request_id: str | None
    event_id: str | None
    bill_line: int | None
    model: str | None
    owner: str | None
    logged: Amount | None
    billed: Amount | None
    detail: str


class ReconciliationDetail(Model):
    run: ReconciliationRun
    differences: list[DifferenceItem]
    total_differences: int


class BillItem(Model):
    id: int
    format: str
    file_name: str
    provider: str | None
    imported_at: Moment
    imported_by: str
    lines: int
    errors: int
    first_day: date | None
    last_day: date | None
    voided: bool


class BillUploaded(Model):
    bill: BillItem
    first_errors: list[str]


class ReconcileRequest(Model):
    bill_id: int
    period: str = Field(description="YYYY-MM, YYYY-MM-DD or FIRST..LAST")
    reviewer: str = Field(min_length=1, max_length=200)
    tolerance: str = Field("1%", description="e.g. 1% or 0.5%")
    provider: str | None = None


# --- budgets ---------------------------------------------------------------------------


class BudgetItem(Model):
    id: str
    scope: str
    scope_value: str
    environment: str | None
    period_kind: str
    unit: str
    limit: str
    thresholds: list[int]
    hard_limit: bool
    owner: str | None
    notes: str | None
    period: str | None = Field(description="The current period; None outside a custom one.")
    spent: str | None
    percent: int | None
    state: str


class BurnPoint(Model):
    day: date
    spent: str = Field(description="Cumulative spend to the end of this day.")


class BudgetDetail(Model):
    budget: BudgetItem
    burn_down: list[BurnPoint]
    crossings: list[dict[str, str]] = Field(
        description="The soft thresholds spend reached this period, and when."
    )
    alerts: list[AlertItem] = Field(description="The alerts raised on this budget, newest first.")


class BudgetRequest(Model):
    scope: Literal["application", "cost_center", "business_unit", "budget_owner"]
    scope_value: str = Field(min_length=1, max_length=200)
    period: Literal["month", "week", "day", "custom"]
    limit: str = Field(description="'500 USD' or '2000000 tokens'")
    thresholds: list[int] = []
    hard_limit: bool = True
    environment: str | None = None
    custom_start: date | None = None
    custom_last_day: date | None = None
    owner: str | None = None
    notes: str | None = None
    reason: str = ""


class SavedBudget(Model):
    outcome: str
    budget: BudgetItem


# --- statements ------------------------------------------------------------------------


class StatementRef(Model):
    owner: str = Field(description="company, application:ID, budget-owner:ID, ...")
    label: str


class StatementsRun(Model):
    period: str
    directory: str
    files: list[str]


# --- prices ----------------------------------------------------------------------------


class PriceItem(Model):
    id: str
    provider: str
    model_match: str
    match_kind: str
    kind: str
    currency: str
    prices: dict[str, str]
    effective_from: Moment
    effective_to: Moment | None
    service_tier: str | None
    source_url: str
    checked_at: date
    checked_by: str
    origin: str
    stale: bool
    age_days: int


class UnpricedItem(Model):
    provider: str
    model: str
    unpriced_events: int
    first_day: date
    last_day: date


class PricesView(Model):
    as_of: date
    cadence_days: int
    entries: list[PriceItem]
    unpriced: list[UnpricedItem]


# --- evidence --------------------------------------------------------------------------


class ReviewItem(Model):
    review_id: str
    usage_period: str
    team_owner: str | None  # a sample row may have none: the checklist fails it
    review_result: str | None
    created_at: Moment
    created_by: str
    checked_at: Moment | None
    note: dict


class FollowUpItem(Model):
    id: int
    origin: str
    origin_id: str
    question: str
    routed_to: str
    opened_at: Moment
    age_days: int
    resolved: bool


class HandoffItem(Model):
    id: str
    created_at: Moment
    created_by: str
    record: dict


class AuditItem(Model):
    id: int
    at: Moment
    actor: str
    action: str
    object_type: str
    object_id: str
    before: str | None
    after: str | None
    reason: str | None


# --- keys and reference files ----------------------------------------------------------


class KeyItem(Model):
    id: str
    application: str
    environment: str | None
    prefix: str
    created_at: Moment
    created_by: str
    revoked_at: Moment | None
    active: bool


class KeyRequest(Model):
    application: str = Field(min_length=1, max_length=200)
    environment: str | None = None
    reason: str = ""


class IssuedKey(Model):
    key: KeyItem
    secret: str = Field(description="Shown once; only its hash is kept.")


class Loaded(Model):
    what: str
    detail: str
