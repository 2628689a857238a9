"""The outcome of checking one allocation context against the registry: allocated, shared
or quarantined, with stable reason codes (the check itself is ``Registry.validate``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from spendtrail.events.model import AllocationContext

Status = Literal["allocated", "shared", "quarantined"]

# Stable codes, in the order they are reported; the exception queue groups by them.
REASON_CODES: dict[str, str] = {
    "missing_owner": "the context names no application, so there is no accountable owner",
    "unknown_application": "the application is not in the registry",
    "unknown_business_unit": "the context names a business unit that is not in the registry",
    "unknown_cost_center": "the context names a cost center that is not in the registry",
    "unknown_budget_owner": "the context names a budget owner who is not in the registry",
    "owner_conflict": "the context names a business unit, cost center or budget owner other "
    "than the application's; cost cannot be moved to another owner",
    "missing_environment": "no environment in the context and no default for the application",
    "unknown_environment": "the environment is not in the registry",
    "environment_not_allowed": "the environment is not one the application may use",
    "missing_workload_class": "no workload class in the context and no default for the application",
    "unknown_workload_class": "the workload class is not in the registry",
    "workload_not_allowed": "the workload class is not one the application may use",
    "no_registry": "no registry version was loaded when the event was ingested",
}


@dataclass(frozen=True, slots=True)
class Allocation:
    """The outcome for one context. Owner fields are the registry's when allocated or shared,
    and exactly what was captured when quarantined."""

    status: Status
    reasons: tuple[str, ...]
    business_unit: str | None
    application: str | None
    environment: str | None
    workload_class: str | None
    cost_center: str | None
    budget_owner: str | None


def quarantine(context: AllocationContext, reasons: tuple[str, ...]) -> Allocation:
    """A quarantined allocation keeping what was captured, for reasons found outside one
    registry's check (``no_registry`` when none was loaded)."""
    unknown = [reason for reason in reasons if reason not in REASON_CODES]
    if unknown or not reasons:
        raise ValueError(f"quarantine needs reason codes from REASON_CODES, got {reasons!r}")
    return Allocation(
        status="quarantined",
        reasons=reasons,
        business_unit=context.business_unit,
        application=context.application,
        environment=context.environment,
        workload_class=context.workload_class,
        cost_center=context.cost_center,
        budget_owner=context.budget_owner,
    )
