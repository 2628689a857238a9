"""Checking one allocation context against the registry: allocated, shared or quarantined.

Values are matched exactly (no case folding, no trimming, no fuzzy match): an unknown value
is quarantined with its reason, never merged into an owner it merely resembles.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from spendtrail.events.model import AllocationContext

if TYPE_CHECKING:
    from spendtrail.registry.model import Application, Registry

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


def allocate(registry: Registry, context: AllocationContext) -> Allocation:
    """The uncached check behind ``Registry.validate``."""
    application = context.application
    reasons: list[str] = []
    owner: Application | None = None
    if not application:
        reasons.append("missing_owner")
    elif application == registry.shared_pool.id:
        owner = registry.shared_pool
    elif (owner := registry.applications.get(application)) is None:
        reasons.append("unknown_application")

    conflict = False
    for given, known, code, owners in (
        (context.business_unit, registry.business_units, "unknown_business_unit", "business_unit"),
        (context.cost_center, registry.cost_centers, "unknown_cost_center", "cost_center"),
        (context.budget_owner, registry.budget_owners, "unknown_budget_owner", "budget_owner"),
    ):
        if not given:
            continue
        if given not in known:
            reasons.append(code)
        if owner is not None and given != getattr(owner, owners):
            conflict = True
    if conflict:
        reasons.append("owner_conflict")

    resolved_environment = context.environment or (owner.default_environment if owner else None)
    reasons.extend(
        _check_choice(
            resolved_environment,
            registry.environments,
            owner.environments if owner else None,
            ("missing_environment", "unknown_environment", "environment_not_allowed"),
        )
    )
    resolved_workload = context.workload_class or (owner.default_workload_class if owner else None)
    reasons.extend(
        _check_choice(
            resolved_workload,
            registry.workload_classes,
            owner.workload_classes if owner else None,
            ("missing_workload_class", "unknown_workload_class", "workload_not_allowed"),
        )
    )

    if reasons or owner is None:  # no owner always comes with a reason; this narrows the type
        return quarantine(context, tuple(reasons))
    return Allocation(
        status="shared" if owner is registry.shared_pool else "allocated",
        reasons=(),
        business_unit=owner.business_unit,
        application=owner.id,
        environment=resolved_environment,
        workload_class=resolved_workload,
        cost_center=owner.cost_center,
        budget_owner=owner.budget_owner,
    )


def _check_choice(
    value: str | None,
    known: Mapping[str, object],
    allowed: tuple[str, ...] | None,
    codes: tuple[str, str, str],
) -> tuple[str, ...]:
    missing, unknown, not_allowed = codes
    if not value:
        return (missing,)
    if value not in known:
        return (unknown,)
    if allowed is not None and value not in allowed:
        return (not_allowed,)
    return ()
