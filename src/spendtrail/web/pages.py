"""The web console's pages: server-rendered HTML over the console's operations
(``spendtrail.console``), the same functions the HTTP API calls. A page parses its query or
form, calls one or a few of them for the signed-in user, and renders a template: no query,
no rule here. Who may see or do what is decided below (``spendtrail.access``); a refusal is
shown as the page's error.
"""

from __future__ import annotations

import calendar
import csv
import io
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from spendtrail.access.principal import Principal
from spendtrail.access.roles import AccessDenied, Permission, allowed
from spendtrail.api.auth import engine_of, settings_of
from spendtrail.bills.formats import FORMATS as BILL_FORMATS
from spendtrail.budgets.model import SCOPES
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
    uploads,
)
from spendtrail.console.errors import NotFound
from spendtrail.console.owners import applications
from spendtrail.console.types import (
    AssignRequest,
    BudgetDetail,
    BudgetRequest,
    KeyRequest,
    ReconcileRequest,
    ResolveRequest,
    SpendReport,
)
from spendtrail.errors import SpendtrailError
from spendtrail.reconcile import DIFFERENCE_KINDS
from spendtrail.reports.costs import GROUPABLE
from spendtrail.web import charts
from spendtrail.web.render import render
from spendtrail.web.session import form_of, page_user

# Where a drill goes next when the dimension clicked was the only grouping.
DRILL_NEXT = ("business_unit", "application", "model", "day")
STATEMENT_FORMATS = ("html", "csv", "md", "json")
PRICES_SHOWN = 60  # catalog rows shown, stale ones first; filters narrow the rest
router = APIRouter(include_in_schema=False)
User = Annotated[Principal, Depends(page_user)]
Flashes = Sequence[tuple[str, str]]  # (ok | error, what happened), shown above a page


def refused(request: Request, who: Principal, page: str, error: SpendtrailError) -> HTMLResponse:
    """A page the user may not see, or a record that is not there (for them), with why."""
    status = 403 if isinstance(error, AccessDenied) else 404 if isinstance(error, NotFound) else 400
    return render(request, "refused.html", who, page, status_code=status, error=str(error))


# --- overview and spend ----------------------------------------------------------------


@router.get("/", name="page-overview")
def overview_page(request: Request, who: User) -> Response:
    engine = engine_of(request)
    o = spend.overview(engine, who)
    days = _days_so_far(o.as_of)
    charts_ = []
    for dimension, label in (("application", "application"), ("model", "model")):
        report = spend.spend(engine, who, o.month, ("day", dimension), {})
        charts_ += _stacked_by_day(report, dimension, label, days)
    return render(request, "overview.html", who, "overview", o=o, charts=charts_)


@router.get("/spend", name="page-spend")
def spend_page(request: Request, who: User) -> Response:
    period, group_by, filters = _explorer_query(request)
    try:
        report = spend.spend(engine_of(request), who, period, group_by, filters)
    except SpendtrailError as error:
        return refused(request, who, "spend", error)
    base = str(request.url_for("page-spend"))
    events = str(request.url_for("page-events"))

    def link(target: str, by: tuple[str, ...], chosen: Mapping[str, str]) -> str:
        query = [("period", report.period), *(("by", b) for b in by), *chosen.items()]
        return f"{target}?{urlencode(query)}"

    def drill(key: Mapping[str, str], dimension: str) -> str:
        rest = tuple(g for g in report.group_by if g != dimension)
        if not rest:
            rest = tuple(d for d in DRILL_NEXT if d != dimension and d not in filters)[:1]
        return link(base, rest, {**filters, dimension: key[dimension]})

    return render(
        request,
        "spend.html",
        who,
        "spend",
        report=report,
        dimensions=GROUPABLE,
        drill=drill,
        events_of=lambda key: link(events, (), {**filters, **key}),
        without=lambda name: link(
            base, report.group_by, {k: v for k, v in filters.items() if k != name}
        ),
        csv_url=link(str(request.url_for("page-spend-csv")), report.group_by, filters),
        events_url=link(events, (), filters),
    )


@router.get("/spend.csv", name="page-spend-csv")
def spend_csv(request: Request, who: User) -> Response:
    period, group_by, filters = _explorer_query(request)
    report = spend.spend(engine_of(request), who, period, group_by, filters)
    name = f"spend-{report.period}.csv"
    return Response(
        _report_csv(report),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get("/spend/events", name="page-events")
def events_page(request: Request, who: User) -> Response:
    period, _, filters = _explorer_query(request)
    offset = _int(request.query_params.get("offset"), 0)
    try:
        found = spend.events(engine_of(request), who, period, filters, limit=100, offset=offset)
    except SpendtrailError as error:
        return refused(request, who, "spend", error)
    query = [("period", found.period), *filters.items()]
    shown = found.offset + len(found.events)
    next_url = (
        f"{request.url_for('page-events')}?{urlencode([*query, ('offset', shown)])}"
        if shown < found.total
        else None
    )
    back = f"{request.url_for('page-spend')}?{urlencode(query)}"
    return render(
        request,
        "events.html",
        who,
        "spend",
        page_=found,
        back=back,
        next_url=next_url,
        title="Events",
    )


# --- exceptions ------------------------------------------------------------------------


@router.get("/exceptions", name="page-exceptions")
def exceptions_page(request: Request, who: User) -> Response:
    return _exceptions(request, who)


def _exceptions(request: Request, who: Principal, flashes: Flashes = ()) -> Response:
    engine = engine_of(request)
    try:
        groups = exceptions.queue(engine, who)
    except SpendtrailError as error:
        return refused(request, who, "exceptions", error)
    return render(
        request,
        "exceptions.html",
        who,
        "exceptions",
        groups=groups,
        applications=applications(engine, who),
        flashes=flashes,
        may_manage=allowed(who.role, Permission.manage_exceptions),
    )


@router.post("/exceptions/{group_id}/assign", name="page-exception-assign")
async def assign_exception(request: Request, group_id: str, who: User) -> Response:
    form = await form_of(request)
    return _after(
        request,
        who,
        _exceptions,
        lambda: exceptions.assign_group(
            engine_of(request),
            who,
            group_id,
            AssignRequest(application=form.get("application", ""), reason=form.get("reason", "")),
        ),
        lambda done: f"Assigned {done.events} events to {done.application}.",
    )


@router.post("/exceptions/{group_id}/resolve", name="page-exception-resolve")
async def resolve_exception(request: Request, group_id: str, who: User) -> Response:
    form = await form_of(request)
    return _after(
        request,
        who,
        _exceptions,
        lambda: exceptions.resolve_group(
            engine_of(request), who, group_id, ResolveRequest(note=form.get("note", ""))
        ),
        lambda done: f"Resolved {done.id} ({done.events} events).",
    )


# --- reconciliation --------------------------------------------------------------------


@router.get("/reconciliation", name="page-reconciliation")
def reconciliation_page(request: Request, who: User) -> Response:
    return _reconciliation(request, who)


def _reconciliation(request: Request, who: Principal, flashes: Flashes = ()) -> Response:
    engine = engine_of(request)
    try:
        runs = reconciliation.runs(engine, who)
        bills = reconciliation.bills(engine, who)
    except SpendtrailError as error:
        return refused(request, who, "reconciliation", error)
    today = datetime.now(UTC).date()
    return render(
        request,
        "reconciliation.html",
        who,
        "reconciliation",
        runs=runs,
        bills=bills,
        bill_formats=sorted(BILL_FORMATS),
        flashes=flashes,
        default_period=f"{today:%Y-%m}",
        may_reconcile=allowed(who.role, Permission.reconcile),
    )


@router.get("/reconciliation/{run_id}", name="page-reconciliation-run")
def reconciliation_run_page(request: Request, run_id: int, who: User) -> Response:
    kind = request.query_params.get("kind") or None
    owner = request.query_params.get("owner") or None
    engine = engine_of(request)
    try:
        detail = reconciliation.run_detail(engine, who, run_id, kind=kind, owner=owner)
        every = reconciliation.run_detail(engine, who, run_id, limit=1_000_000)
    except SpendtrailError as error:
        return refused(request, who, "reconciliation", error)
    owners = sorted({d.owner for d in every.differences if d.owner})
    return render(
        request,
        "reconciliation_run.html",
        who,
        "reconciliation",
        detail=detail,
        kinds=DIFFERENCE_KINDS,
        kind=kind,
        owner=owner,
        owners=owners,
        title=f"Reconciliation #{run_id}",
    )


@router.post("/reconciliation/bills", name="page-bill-upload")
async def upload_bill(request: Request, who: User) -> Response:
    form = await form_of(request)
    upload = form.get("file")
    data = await upload.read() if hasattr(upload, "read") else b""

    def run():
        if not data:
            raise SpendtrailError("choose a bill file to upload (the file was empty)")
        return reconciliation.upload_bill(
            engine_of(request),
            who,
            settings_of(request).home,
            uploads.Upload(upload.filename or "bill", data),
            form.get("format") or None,
        )

    return _after(
        request,
        who,
        _reconciliation,
        run,
        lambda done: (
            f"Imported bill #{done.bill.id}: {done.bill.lines} lines, "
            f"{done.bill.errors} bad rows" + "".join(f"; {e}" for e in done.first_errors[:3])
        ),
    )


@router.post("/reconciliation/runs", name="page-reconcile")
async def run_reconciliation(request: Request, who: User) -> Response:
    form = await form_of(request)
    return _after(
        request,
        who,
        _reconciliation,
        lambda: reconciliation.run_reconciliation(
            engine_of(request),
            who,
            ReconcileRequest(
                bill_id=_int(form.get("bill_id"), 0),
                period=form.get("period", ""),
                reviewer=form.get("reviewer", ""),
                tolerance=form.get("tolerance") or "1%",
            ),
        ),
        lambda done: f"Reconciliation #{done.id}: {done.result}.",
    )


# --- budgets ---------------------------------------------------------------------------


@router.get("/budgets", name="page-budgets")
def budgets_page(request: Request, who: User) -> Response:
    return _budgets(request, who)


def _budgets(
    request: Request, who: Principal, flashes: Flashes = (), form: dict | None = None
) -> Response:
    engine = engine_of(request)
    items = budgets.budget_items(engine, who)
    return render(
        request,
        "budgets.html",
        who,
        "budgets",
        budgets=items,
        budget_alerts=alerts.alert_items(engine, who, kinds=list(alerts.BUDGET_KINDS), limit=50),
        flashes=flashes,
        **_budget_form(engine, who, form),
    )


@router.get("/budgets/{budget_id}", name="page-budget")
def budget_page(request: Request, budget_id: str, who: User) -> Response:
    engine = engine_of(request)
    try:
        detail = budgets.budget_detail(engine, who, budget_id)
    except SpendtrailError as error:
        return refused(request, who, "budgets", error)
    b = detail.budget
    form = {
        "id": b.id,
        "scope": b.scope,
        "scope_value": b.scope_value,
        "period": b.period_kind,
        "limit": b.limit,
        "thresholds": ",".join(map(str, b.thresholds)),
        "hard_limit": b.hard_limit,
    }
    return render(
        request,
        "budget.html",
        who,
        "budgets",
        detail=detail,
        chart=_burn_down_chart(detail),
        title=f"Budget {b.id}",
        **_budget_form(engine, who, form),
    )


@router.post("/budgets", name="page-budget-save")
async def save_budget(request: Request, who: User) -> Response:
    form = await form_of(request)
    fields = {
        k: form.get(k, "")
        for k in ("id", "scope", "scope_value", "period", "limit", "thresholds", "reason")
    }
    fields["hard_limit"] = form.get("hard_limit") == "1"

    def save():
        return budgets.set_budget(
            engine_of(request),
            who,
            fields["id"],
            BudgetRequest(
                scope=fields["scope"],
                scope_value=fields["scope_value"],
                period=fields["period"],
                limit=fields["limit"],
                thresholds=_thresholds(fields["thresholds"]),
                hard_limit=fields["hard_limit"],
                reason=fields["reason"],
            ),
        )

    return _after(
        request,
        who,
        _budgets,
        save,
        lambda done: f"Budget {done.budget.id}: {done.outcome}.",
        form=fields,
    )


# --- statements, prices, evidence ------------------------------------------------------


@router.get("/statements", name="page-statements")
def statements_page(request: Request, who: User) -> Response:
    period = request.query_params.get("period") or f"{datetime.now(UTC):%Y-%m}"
    try:
        found = statements.available(engine_of(request), who, period)
    except SpendtrailError as error:
        return refused(request, who, "statements", error)
    return render(
        request,
        "statements.html",
        who,
        "statements",
        statements=found,
        period=period,
        formats=STATEMENT_FORMATS,
    )


@router.get("/statements/{owner}", name="page-statement")
def statement_page(request: Request, owner: str, who: User) -> Response:
    period = request.query_params.get("period") or f"{datetime.now(UTC):%Y-%m}"
    engine = engine_of(request)
    try:
        label = next(
            (s.label for s in statements.available(engine, who, period) if s.owner == owner), None
        )
        if label is None:
            raise NotFound(f"no statement for {owner} in {period} in your view")
    except SpendtrailError as error:
        return refused(request, who, "statements", error)
    return render(
        request,
        "statement.html",
        who,
        "statements",
        owner=owner,
        label=label,
        period=period,
        formats=STATEMENT_FORMATS,
        title=label,
    )


@router.get("/statements/{owner}/file", name="page-statement-download")
def statement_download(request: Request, owner: str, who: User) -> Response:
    period = request.query_params.get("period") or f"{datetime.now(UTC):%Y-%m}"
    fmt = request.query_params.get("format", "html")
    try:
        body, media_type = statements.statement(engine_of(request), who, period, owner, fmt)
    except SpendtrailError as error:
        return refused(request, who, "statements", error)
    name = f"chargeback-{period}-{owner.replace(':', '-')}.{fmt}"
    disposition = "inline" if request.query_params.get("inline") else "attachment"
    return Response(
        body,
        media_type=media_type,
        headers={"Content-Disposition": f'{disposition}; filename="{name}"'},
    )


@router.get("/prices", name="page-prices")
def prices_page(request: Request, who: User) -> Response:
    view = prices.catalog(engine_of(request), who)
    provider = request.query_params.get("provider", "")
    model = request.query_params.get("model", "")
    only_stale = request.query_params.get("stale") == "1"
    entries = [
        e
        for e in view.entries
        if (not provider or e.provider == provider)
        and model.lower() in e.model_match.lower()
        and (e.stale or not only_stale)
    ]
    entries.sort(key=lambda e: (not e.stale, e.provider, e.model_match, e.effective_from))
    return render(
        request,
        "prices.html",
        who,
        "prices",
        view=view,
        entries=entries,
        shown=entries[:PRICES_SHOWN],
        provider=provider,
        model=model,
        only_stale=only_stale,
        providers=sorted({e.provider for e in view.entries}),
    )


@router.get("/evidence", name="page-evidence")
def evidence_page(request: Request, who: User) -> Response:
    engine = engine_of(request)
    try:
        reviews = evidence.reviews(engine, who)
        follow_ups = evidence.follow_ups(engine, who, include_resolved=True)
        audit = evidence.audit(engine, who, limit=100)
        try:
            handoffs = [evidence.handoff(engine, who)]
        except NotFound:
            handoffs = []
    except SpendtrailError as error:
        return refused(request, who, "evidence", error)
    return render(
        request,
        "evidence.html",
        who,
        "evidence",
        reviews=reviews,
        follow_ups=follow_ups,
        handoffs=handoffs,
        audit=list(reversed(audit)),
    )


# --- keys ------------------------------------------------------------------------------


@router.get("/keys", name="page-keys")
def keys_page(request: Request, who: User) -> Response:
    """The keys; right after issuing one, its secret, this once (taken, so a reload shows
    none)."""
    return _keys(request, who, issued=request.app.state.shown_once.take(request))


def _keys(
    request: Request, who: Principal, flashes: Flashes = (), issued: dict | None = None
) -> Response:
    engine = engine_of(request)
    return render(
        request,
        "keys.html",
        who,
        "keys",
        keys=keys.keys(engine, who),
        applications=applications(engine, who),
        flashes=flashes,
        issued=issued,
        may_manage=allowed(who.role, Permission.manage_keys),
    )


@router.post("/keys", name="page-key-issue")
async def issue_key(request: Request, who: User) -> Response:
    """Issue, then redirect (303) to the keys page, which shows the secret once: reloading
    it neither issues another key nor shows the secret again."""
    form = await form_of(request)
    try:
        done = keys.issue(
            engine_of(request),
            who,
            KeyRequest(
                application=form.get("application", ""),
                environment=form.get("environment") or None,
                reason=form.get("reason", ""),
            ),
        )
    except (SpendtrailError, ValueError) as error:
        return _failed(request, who, _keys, error)
    request.app.state.shown_once.put(
        request,
        {
            "id": done.key.id,
            "application": done.key.application,
            "environment": done.key.environment,
            "secret": done.secret,
        },
    )
    return RedirectResponse(str(request.url_for("page-keys")), status_code=303)


@router.post("/keys/{key_id}/revoke", name="page-key-revoke")
async def revoke_key(request: Request, key_id: str, who: User) -> Response:
    form = await form_of(request)
    return _after(
        request,
        who,
        _keys,
        lambda: keys.revoke(
            engine_of(request), who, key_id, form.get("reason") or "revoked in the console"
        ),
        lambda done: f"Revoked key {done.id} of {done.application}.",
    )


# --- helpers ---------------------------------------------------------------------------


def _after(
    request: Request,
    who: Principal,
    page: Callable[..., Response],
    action: Callable[[], Any],
    message: Callable[[Any], str],
    **again: Any,
) -> Response:
    """Run a form's action and show its page again with what happened: the outcome, or
    why it was refused (403 for a role or scope, 400 for bad input)."""
    try:
        done = action()
    except (SpendtrailError, ValueError) as error:
        return _failed(request, who, page, error, **again)
    return page(request, who, flashes=[("ok", message(done))])


def _failed(
    request: Request, who: Principal, page: Callable[..., Response], error: Exception, **again: Any
) -> Response:
    response = page(request, who, flashes=[("error", _reason(error))], **again)
    response.status_code = (
        403 if isinstance(error, AccessDenied) else 404 if isinstance(error, NotFound) else 400
    )
    return response


def _reason(error: Exception) -> str:
    if hasattr(error, "errors"):  # pydantic: say which field and why, in one line
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())  # type: ignore[attr-defined]
    return str(error)


def _explorer_query(request: Request) -> tuple[str, tuple[str, ...], dict[str, str]]:
    q = request.query_params
    period = q.get("period") or f"{datetime.now(UTC):%Y-%m}"
    group_by = tuple(dict.fromkeys(b for b in q.getlist("by") if b)) or (
        () if any(d in q for d in GROUPABLE) else ("business_unit",)
    )
    filters = {d: q[d] for d in GROUPABLE if d in q}
    # The filter form names a dimension and a value; links carry them as dimension=value.
    if q.get("filter_by") in GROUPABLE and q.get("filter_value"):
        filters[q["filter_by"]] = q["filter_value"].strip()
    return period, group_by, filters


def _report_csv(report: SpendReport) -> str:
    """The rows on screen and their total, one line per currency, exact amounts."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        [
            *report.group_by,
            "events",
            "unpriced_events",
            "input_tokens",
            "output_tokens",
            "currency",
            "cost",
        ]
    )
    for row in [*report.rows, report.total]:
        key = (
            [row.key.get(g, "") for g in report.group_by]
            if row is not report.total
            else ["TOTAL"] + [""] * (len(report.group_by) - 1)
        )[: len(report.group_by)]
        for cost in row.cost or [None]:
            writer.writerow(
                [
                    *key,
                    row.events,
                    row.unpriced_events,
                    row.input_tokens,
                    row.output_tokens,
                    cost.currency if cost else "",
                    cost.amount if cost else "",
                ]
            )
    return out.getvalue()


def _days_so_far(today: date) -> list[str]:
    return [date(today.year, today.month, d).isoformat() for d in range(1, today.day + 1)]


def _stacked_by_day(
    report: SpendReport, dimension: str, label: str, days: list[str]
) -> list[dict[str, Any]]:
    """One stacked chart per currency: spend per day by ``dimension``, and its table."""
    per_currency: dict[str, dict[str, dict[str, Decimal]]] = defaultdict(lambda: defaultdict(dict))
    for row in report.rows:
        for cost in row.cost:
            name = row.key[dimension] or "(none)"
            per_currency[cost.currency][name][row.key["day"]] = Decimal(cost.amount)
    found = []
    for currency, values in sorted(per_currency.items()):
        series = charts.stack_series(days, values)
        svg = charts.stacked_bars(
            f"Spend per day by {label}, {report.period} ({currency})",
            f"Stacked bars, one per day of {report.period} so far; each colour is one "
            f"{label}. The table below holds the same figures.",
            days,
            series,
            currency,
        )
        rows = [[d, *(s.values[i] for s in series)] for i, d in enumerate(days)]
        found.append(
            {
                "heading": f"Spend per day by {label} ({currency})",
                "svg": svg,
                "columns": ["day", *(s.name for s in series)],
                "rows": rows,
            }
        )
    return found


def _burn_down_chart(detail: BudgetDetail) -> dict[str, Any] | None:
    b = detail.budget
    if not detail.burn_down or b.period is None:
        return None
    limit, unit = _quantity(b.limit)
    spent = [_quantity(p.spent)[0] for p in detail.burn_down]
    drawn = [p.day.isoformat() for p in detail.burn_down]
    first = detail.burn_down[0].day
    length = {"month": calendar.monthrange(first.year, first.month)[1], "week": 7, "day": 1}.get(
        b.period_kind, len(drawn)
    )
    days = [(first + timedelta(days=i)).isoformat() for i in range(max(length, len(drawn)))]
    svg = charts.burn_down(
        f"Budget {b.id}: spend so far in {b.period} against its limit",
        f"Cumulative spend per day, {drawn[0]} to {drawn[-1]}, against the limit of {b.limit}"
        " (dashed) and the even pace to it (dotted).",
        days,
        spent,
        limit,
        unit,
    )
    return {
        "svg": svg,
        "columns": ["day", f"spent ({unit})"],
        "rows": [[d, s] for d, s in zip(drawn, spent, strict=True)],
    }


def _quantity(text: str) -> tuple[Decimal, str]:
    number, _, unit = text.partition(" ")
    return Decimal(number), unit


def _budget_form(engine, who: Principal, form: dict | None) -> dict[str, Any]:
    may_set = allowed(who.role, Permission.set_budgets)
    default = {
        "id": "",
        "scope": "application",
        "scope_value": "",
        "period": "month",
        "limit": "",
        "thresholds": "50,80",
        "hard_limit": True,
    }
    return {
        "may_set": may_set,
        "form": {**default, **(form or {})},
        "scopes": SCOPES,
        "owner_choices": applications(engine, who) if may_set else [],
    }


def _thresholds(text: str) -> list[int]:
    try:
        return [int(t.strip().rstrip("%")) for t in text.split(",") if t.strip()]
    except ValueError:
        raise SpendtrailError(f"thresholds {text!r}: expected percents, e.g. 50,80") from None


def _int(text: Any, default: int) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        return default
