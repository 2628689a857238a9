"""The API's reads: each route parses its query, calls one ``spendtrail.console`` function
with the caller, and returns its typed value. Whose figures appear is decided there."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response

from spendtrail.alerts.model import KINDS as ALERT_KINDS
from spendtrail.api.auth import Caller, CurrentUser, Ledger, identify
from spendtrail.api.errors import RESPONSES
from spendtrail.console import (
    alerts,
    budgets,
    evidence,
    exceptions,
    keys,
    prices,
    reconciliation,
    spend,
    statements,
    users,
)
from spendtrail.console.types import (
    AlertItem,
    AuditItem,
    BillItem,
    BudgetDetail,
    BudgetItem,
    EventPage,
    ExceptionDetail,
    ExceptionItem,
    FollowUpItem,
    HandoffItem,
    KeyItem,
    Me,
    Overview,
    PricesView,
    ReconciliationDetail,
    ReconciliationRun,
    ReviewItem,
    SpendReport,
    StatementRef,
    UserItem,
)
from spendtrail.ledger.event_list import MAX_EVENTS
from spendtrail.reports.costs import GROUPABLE
from spendtrail.reports.statement_file import MEDIA_TYPES

router = APIRouter(prefix="/api/v1", responses=RESPONSES)
Period = Annotated[
    str, Query(description="YYYY-MM, YYYY-MM-DD or FIRST..LAST (UTC days).", max_length=40)
]
Text = Annotated[str | None, Query(max_length=200)]


def _filters(
    business_unit: Text = None,
    application: Text = None,
    environment: Text = None,
    workload_class: Text = None,
    cost_center: Text = None,
    budget_owner: Text = None,
    model: Text = None,
    provider: Text = None,
    allocation_status: Text = None,
    day: Annotated[str | None, Query(description="YYYY-MM-DD", max_length=10)] = None,
) -> dict[str, str]:
    """Filters on the owner dimensions, model, provider, status and day (absent: any)."""
    given = {
        "business_unit": business_unit,
        "application": application,
        "environment": environment,
        "workload_class": workload_class,
        "cost_center": cost_center,
        "budget_owner": budget_owner,
        "model": model,
        "provider": provider,
        "allocation_status": allocation_status,
        "day": day,
    }
    return {name: value for name, value in given.items() if value is not None}


Filters = Annotated[dict[str, str], Depends(_filters)]


@router.get("/me", response_model=Me, tags=["users"])
def get_me(caller: Annotated[Caller, Depends(identify)]) -> Me:
    """The caller, its role and scope, and the CSRF token for cookie writes."""
    return users.me(caller.principal, caller.csrf_token)


@router.get("/users", response_model=list[UserItem], tags=["users"])
def get_users(who: CurrentUser, engine: Ledger) -> list[UserItem]:
    return users.users(engine, who)


@router.get("/overview", response_model=Overview, tags=["spend"])
def get_overview(who: CurrentUser, engine: Ledger) -> Overview:
    return spend.overview(engine, who)


@router.get("/spend", response_model=SpendReport, tags=["spend"])
def get_spend(
    who: CurrentUser,
    engine: Ledger,
    period: Period,
    filters: Filters,
    group_by: Annotated[
        str, Query(description=f"Comma-separated, from: {', '.join(GROUPABLE)}", max_length=300)
    ] = "application,model,day",
) -> SpendReport:
    chosen = tuple(g.strip() for g in group_by.split(",") if g.strip())
    return spend.spend(engine, who, period, chosen, filters)


@router.get("/spend/events", response_model=EventPage, tags=["spend"])
def get_events(
    who: CurrentUser,
    engine: Ledger,
    period: Period,
    filters: Filters,
    limit: Annotated[int, Query(ge=1, le=MAX_EVENTS)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> EventPage:
    """The events under a figure: the same filters as /spend, newest first."""
    return spend.events(engine, who, period, filters, limit, offset)


@router.get("/exceptions", response_model=list[ExceptionItem], tags=["exceptions"])
def get_exceptions(
    who: CurrentUser,
    engine: Ledger,
    period: Annotated[str | None, Query(max_length=40)] = None,
) -> list[ExceptionItem]:
    return exceptions.queue(engine, who, period)


@router.get("/exceptions/{group_id}", response_model=ExceptionDetail, tags=["exceptions"])
def get_exception(
    who: CurrentUser,
    engine: Ledger,
    group_id: str,
    limit: Annotated[int, Query(ge=1, le=MAX_EVENTS)] = 100,
) -> ExceptionDetail:
    return exceptions.group_detail(engine, who, group_id, limit)


@router.get("/bills", response_model=list[BillItem], tags=["reconciliation"])
def get_bills(who: CurrentUser, engine: Ledger) -> list[BillItem]:
    return reconciliation.bills(engine, who)


@router.get("/reconciliations", response_model=list[ReconciliationRun], tags=["reconciliation"])
def get_reconciliations(
    who: CurrentUser,
    engine: Ledger,
    period: Annotated[str | None, Query(max_length=40)] = None,
) -> list[ReconciliationRun]:
    return reconciliation.runs(engine, who, period)


@router.get(
    "/reconciliations/{run_id}", response_model=ReconciliationDetail, tags=["reconciliation"]
)
def get_reconciliation(
    who: CurrentUser,
    engine: Ledger,
    run_id: Annotated[int, Path(ge=1, le=2**53)],
    kind: Text = None,
    owner: Text = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 500,
) -> ReconciliationDetail:
    """One run with its differences, filtered by kind and owner."""
    return reconciliation.run_detail(engine, who, run_id, kind=kind, owner=owner, limit=limit)


@router.get("/budgets", response_model=list[BudgetItem], tags=["budgets"])
def get_budgets(who: CurrentUser, engine: Ledger) -> list[BudgetItem]:
    return budgets.budget_items(engine, who)


@router.get("/budgets/{budget_id}", response_model=BudgetDetail, tags=["budgets"])
def get_budget(who: CurrentUser, engine: Ledger, budget_id: str) -> BudgetDetail:
    """A budget's state, its burn-down by day in the current period, and its alerts."""
    return budgets.budget_detail(engine, who, budget_id)


@router.get("/alerts", response_model=list[AlertItem], tags=["alerts"])
def get_alerts(
    who: CurrentUser,
    engine: Ledger,
    kind: Annotated[
        str | None, Query(description=f"One of: {', '.join(ALERT_KINDS)}", max_length=40)
    ] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> list[AlertItem]:
    """The newest alerts about owners in this user's scope (company-wide ones for users
    who see every owner), each with its delivery state per channel."""
    return alerts.alert_items(engine, who, kinds=None if kind is None else [kind], limit=limit)


@router.get("/statements", response_model=list[StatementRef], tags=["statements"])
def get_statements(who: CurrentUser, engine: Ledger, period: Period) -> list[StatementRef]:
    """The statements this user may read for the period."""
    return statements.available(engine, who, period)


@router.get(
    "/statements/render",
    response_class=Response,
    tags=["statements"],
    responses={
        200: {
            "description": "The statement.",
            "content": {
                media.split(";")[0]: {"schema": {"type": "string"}}
                for media in MEDIA_TYPES.values()
            },
        }
    },
)
def get_statement(
    who: CurrentUser,
    engine: Ledger,
    period: Period,
    owner: Annotated[
        str,
        Query(
            description="company, application:ID, budget-owner:ID, cost-center:ID "
            "or business-unit:ID",
            max_length=250,
        ),
    ] = "company",
    format: Annotated[str, Query(pattern="^(md|html|csv|json|pdf)$")] = "json",
) -> Response:
    body, media = statements.statement(engine, who, period, owner, format)
    name = f"statement-{period}-{owner.replace(':', '-')}.{format}"
    return Response(
        body, media_type=media, headers={"Content-Disposition": f'inline; filename="{name}"'}
    )


@router.get("/prices", response_model=PricesView, tags=["prices"])
def get_prices(
    who: CurrentUser,
    engine: Ledger,
    period: Annotated[str | None, Query(max_length=40)] = None,
    cadence_days: Annotated[int, Query(ge=1, le=3650)] = 30,
) -> PricesView:
    """The catalog with provenance and stale flags; models seen without a price."""
    return prices.catalog(engine, who, period, cadence_days=cadence_days)


@router.get("/evidence/reviews", response_model=list[ReviewItem], tags=["evidence"])
def get_reviews(
    who: CurrentUser, engine: Ledger, period: Annotated[str | None, Query(max_length=40)] = None
) -> list[ReviewItem]:
    return evidence.reviews(engine, who, period)


@router.get("/evidence/follow-ups", response_model=list[FollowUpItem], tags=["evidence"])
def get_follow_ups(
    who: CurrentUser, engine: Ledger, include_resolved: bool = False
) -> list[FollowUpItem]:
    return evidence.follow_ups(engine, who, include_resolved)


@router.get("/evidence/handoff", response_model=HandoffItem, tags=["evidence"])
def get_handoff(who: CurrentUser, engine: Ledger, handoff_id: Text = None) -> HandoffItem:
    """A handoff record; the latest without an id."""
    return evidence.handoff(engine, who, handoff_id)


@router.get("/evidence/audit", response_model=list[AuditItem], tags=["evidence"])
def get_audit(
    who: CurrentUser,
    engine: Ledger,
    object_type: Text = None,
    actor: Text = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 200,
) -> list[AuditItem]:
    return evidence.audit(engine, who, object_type=object_type, actor=actor, limit=limit)


@router.get("/keys", response_model=list[KeyItem], tags=["keys"])
def get_keys(who: CurrentUser, engine: Ledger) -> list[KeyItem]:
    """Gateway keys of the applications in this user's scope."""
    return keys.keys(engine, who)
