"""The owner registry: the controlled vocabulary every allocation context is checked against.

Entries are immutable; a changed registry is a new ``Registry`` (and a new stored version),
so an event validated against one version keeps meaning the same thing.

Values are matched exactly (no case folding, no trimming, no fuzzy match): an unknown value
is quarantined with its reason, never merged into an owner it merely resembles.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from datetime import datetime
from typing import Any

from spendtrail.events.model import AllocationContext
from spendtrail.registry.accounts import Claim, ProviderAccount, index_accounts, resolve
from spendtrail.registry.allocation import Allocation, quarantine
from spendtrail.registry.errors import RegistryError


@dataclass(frozen=True, slots=True)
class BusinessUnit:
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class CostCenter:
    id: str
    name: str
    business_unit: str


@dataclass(frozen=True, slots=True)
class BudgetOwner:
    id: str
    name: str
    role: str
    email: str | None = None


@dataclass(frozen=True, slots=True)
class Environment:
    id: str
    description: str | None = None
    # Strict: the gateway refuses a call here whose context the registry does not allow,
    # instead of serving it quarantined (docs/gateway.md, the header policy).
    strict: bool = False


@dataclass(frozen=True, slots=True)
class WorkloadClass:
    id: str
    description: str | None = None


@dataclass(frozen=True, slots=True)
class Application:
    """An application, or the shared pool (same shape: it has one owner and cost center too)."""

    id: str
    name: str
    business_unit: str
    cost_center: str
    budget_owner: str
    environments: tuple[str, ...]
    workload_classes: tuple[str, ...]
    default_environment: str | None = None
    default_workload_class: str | None = None
    description: str | None = None


# Document section name -> entry class, in the order documents and diffs list them.
SECTIONS: dict[str, type] = {
    "business_units": BusinessUnit,
    "cost_centers": CostCenter,
    "budget_owners": BudgetOwner,
    "environments": Environment,
    "workload_classes": WorkloadClass,
    "applications": Application,
}

# Contexts seen by one registry are few (applications x environments x workloads), but a
# misbehaving caller could send endless unknown values; past this size the memo starts over.
_MEMO_LIMIT = 65_536


@dataclass(frozen=True)
class Registry:
    business_units: dict[str, BusinessUnit]
    cost_centers: dict[str, CostCenter]
    budget_owners: dict[str, BudgetOwner]
    environments: dict[str, Environment]
    workload_classes: dict[str, WorkloadClass]
    applications: dict[str, Application]
    shared_pool: Application
    effective_from: datetime | None = None
    provider_accounts: tuple[ProviderAccount, ...] = ()
    _accounts: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    _memo: dict[tuple[str | None, ...], Allocation] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        accounts = tuple(sorted(self.provider_accounts, key=lambda a: (a.key, a.kind)))
        object.__setattr__(self, "provider_accounts", accounts)
        object.__setattr__(self, "_accounts", index_accounts(accounts))

    def claim(self, provider: str, api_key: str | None, project: str | None) -> Claim | None:
        """Whose a bill line of ``provider`` is (``spendtrail.registry.accounts``); None when
        no account of that provider is mapped."""
        return resolve(self._accounts, provider, api_key, project)

    def validate(self, context: AllocationContext) -> Allocation:
        """Allocated, shared or quarantined, with every reason that applies.

        Memoized on the owner fields only: ``tags`` and ``job_id`` never change the outcome.
        """
        key = (
            context.application,
            context.environment,
            context.workload_class,
            context.business_unit,
            context.cost_center,
            context.budget_owner,
        )
        found = self._memo.get(key)
        if found is None:
            found = allocate(self, context)
            if len(self._memo) >= _MEMO_LIMIT:
                self._memo.clear()
            self._memo[key] = found
        return found

    def counts(self) -> dict[str, int]:
        counts = {name: len(getattr(self, name)) for name in SECTIONS}
        if self.provider_accounts:
            counts["provider_accounts"] = len(self.provider_accounts)
        return counts

    def to_document(self) -> dict[str, Any]:
        """The normalized form that is stored and hashed: entries sorted by id, allowed lists
        sorted, unset optional fields left out, so formatting and order in the YAML never
        make a new version."""
        document: dict[str, Any] = {
            name: [_entry_document(entry) for _, entry in sorted(getattr(self, name).items())]
            for name in SECTIONS
        }
        document["shared_pool"] = _entry_document(self.shared_pool)
        if self.effective_from is not None:
            document["effective_from"] = self.effective_from.isoformat()
        if self.provider_accounts:  # left out when empty: older versions keep their hash
            document["provider_accounts"] = [_entry_document(a) for a in self.provider_accounts]
        return document

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> Registry:
        """Rebuild a registry from ``to_document`` output (stored versions)."""
        try:
            sections = {
                name: {
                    item["id"]: _entry_from_document(entry_type, item) for item in document[name]
                }
                for name, entry_type in SECTIONS.items()
            }
            effective_from = document.get("effective_from")
            return cls(
                **sections,
                shared_pool=_entry_from_document(Application, document["shared_pool"]),
                effective_from=None
                if effective_from is None
                else datetime.fromisoformat(effective_from),
                provider_accounts=tuple(
                    _entry_from_document(ProviderAccount, item)
                    for item in document.get("provider_accounts", ())
                ),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RegistryError(f"stored registry document is damaged: {exc!r}") from None


def _entry_document(entry: Any) -> dict[str, Any]:
    """Unset optional fields (None, or a flag left false) are left out, so a registry
    written before a field existed keeps its document and its hash."""
    return {
        key: sorted(value) if isinstance(value, tuple) else value
        for key, value in asdict(entry).items()
        if value is not None and value is not False
    }


def _entry_from_document(entry_type: type, item: dict[str, Any]) -> Any:
    values = {}
    for f in fields(entry_type):
        value = item[f.name] if f.default is MISSING else item.get(f.name, f.default)
        values[f.name] = tuple(value) if isinstance(value, list) else value
    return entry_type(**values)


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
    resolved_workload = context.workload_class or (owner.default_workload_class if owner else None)
    for value, known, allowed, codes in (
        (resolved_environment, registry.environments, owner.environments if owner else None,
         ("missing_environment", "unknown_environment", "environment_not_allowed")),
        (resolved_workload, registry.workload_classes, owner.workload_classes if owner else None,
         ("missing_workload_class", "unknown_workload_class", "workload_not_allowed")),
    ):
        reasons.extend(_check_choice(value, known, allowed, codes))

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
