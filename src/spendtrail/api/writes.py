"""The API's writes: each route parses its body or upload, calls one ``spendtrail.console``
function with the caller (which checks role and scope and audits the change with the user's
name), and returns its typed value. Uploaded files are kept under the home's uploads/."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from spendtrail.api.auth import CurrentUser, Ledger, settings_of
from spendtrail.api.errors import RESPONSES
from spendtrail.console import (
    budgets,
    evidence,
    exceptions,
    keys,
    reconciliation,
    reference,
    statements,
)
from spendtrail.console.reference import Kind
from spendtrail.console.types import (
    AssignRequest,
    AssignResult,
    BillUploaded,
    BudgetRequest,
    ExceptionItem,
    IssuedKey,
    KeyItem,
    KeyRequest,
    Loaded,
    ReconcileRequest,
    ReconciliationRun,
    ResolveRequest,
    ReviewItem,
    SavedBudget,
    StatementsRun,
)
from spendtrail.console.uploads import MAX_UPLOAD, Upload
from spendtrail.errors import SpendtrailError

router = APIRouter(prefix="/api/v1", responses=RESPONSES)
Reason = Annotated[str, Form(max_length=2000)]


class RevokeRequest(BaseModel):
    reason: str = Field("", max_length=2000)


class ReviewRequest(BaseModel):
    note: dict = Field(description="A review note (docs/evidence.md), as JSON.")
    reason: str = Field("", max_length=2000)


class StatementsRequest(BaseModel):
    period: str = Field(max_length=40, description="YYYY-MM")


@router.post("/exceptions/{group_id}/assign", response_model=AssignResult, tags=["exceptions"])
def assign_exception(
    who: CurrentUser, engine: Ledger, group_id: str, body: AssignRequest
) -> AssignResult:
    """Assign a group's usage to an application, with a reason (audited)."""
    return exceptions.assign_group(engine, who, group_id, body)


@router.post("/exceptions/{group_id}/resolve", response_model=ExceptionItem, tags=["exceptions"])
def resolve_exception(
    who: CurrentUser, engine: Ledger, group_id: str, body: ResolveRequest
) -> ExceptionItem:
    return exceptions.resolve_group(engine, who, group_id, body)


@router.post("/keys", response_model=IssuedKey, status_code=201, tags=["keys"])
def create_key(who: CurrentUser, engine: Ledger, body: KeyRequest) -> IssuedKey:
    """Issue a gateway key for an application in the caller's scope; the secret is in this
    answer only."""
    return keys.issue(engine, who, body)


@router.post("/keys/{key_id}/revoke", response_model=KeyItem, tags=["keys"])
def revoke_key(who: CurrentUser, engine: Ledger, key_id: str, body: RevokeRequest) -> KeyItem:
    return keys.revoke(engine, who, key_id, body.reason)


@router.put("/budgets/{budget_id}", response_model=SavedBudget, tags=["budgets"])
def put_budget(
    who: CurrentUser, engine: Ledger, budget_id: str, body: BudgetRequest
) -> SavedBudget:
    """Create or replace a budget (an owner: only on its own owners)."""
    return budgets.set_budget(engine, who, budget_id, body)


@router.post("/bills", response_model=BillUploaded, status_code=201, tags=["reconciliation"])
async def upload_bill(
    request: Request,
    who: CurrentUser,
    engine: Ledger,
    file: Annotated[UploadFile, File(description="The provider's bill.")],
    format: Annotated[str | None, Form(max_length=40)] = None,
    provider: Annotated[str | None, Form(max_length=200)] = None,
) -> BillUploaded:
    """Import a bill file (format detected unless given)."""
    return await run_in_threadpool(
        reconciliation.upload_bill, engine, who, _home(request), await _read(file), format, provider
    )


@router.post(
    "/reconciliations", response_model=ReconciliationRun, status_code=201, tags=["reconciliation"]
)
def run_reconciliation(
    who: CurrentUser, engine: Ledger, body: ReconcileRequest
) -> ReconciliationRun:
    """Match a bill against the ledger for a period and record the result."""
    return reconciliation.run_reconciliation(engine, who, body)


@router.post("/statements/run", response_model=StatementsRun, status_code=201, tags=["statements"])
def run_statements(
    request: Request, who: CurrentUser, engine: Ledger, body: StatementsRequest
) -> StatementsRun:
    """Write the period's statements (company and every owner) under the home's
    statements/ folder."""
    return statements.run_month(engine, who, body.period, _home(request) / "statements")


@router.post("/evidence/reviews", response_model=ReviewItem, status_code=201, tags=["evidence"])
def write_review(who: CurrentUser, engine: Ledger, body: ReviewRequest) -> ReviewItem:
    """Store a review note under a fresh id and check it."""
    return evidence.write_review(engine, who, body.note, body.reason)


@router.post("/reference/{kind}", response_model=Loaded, status_code=201, tags=["reference"])
async def load_reference(
    request: Request,
    who: CurrentUser,
    engine: Ledger,
    kind: Kind,
    file: Annotated[UploadFile, File(description="The YAML file, as reviewed.")],
    reason: Reason = "",
) -> Loaded:
    """Load a reviewed file (admins): the owner registry, a price sheet or the shared-cost
    rules, checked as the CLI checks them and stored as a new audited version."""
    return await run_in_threadpool(
        reference.load_reference, engine, who, _home(request), kind, await _read(file), reason
    )


def _home(request: Request) -> Path:
    return settings_of(request).home


async def _read(file: UploadFile) -> Upload:
    data = await file.read(MAX_UPLOAD + 1)
    if len(data) > MAX_UPLOAD:
        raise SpendtrailError(f"{file.filename}: larger than {MAX_UPLOAD} bytes")
    return Upload(file.filename or "upload", data)
