"""The owner registry: the controlled vocabulary every allocation context is checked against.

Entries are immutable; a changed registry is a new ``Registry`` (and a new stored version),
so an event validated against one version keeps meaning the same thing.
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields
from datetime import datetime
from typing import Any

from spendtrail.events.model import AllocationContext
from spendtrail.registry.allocation import Allocation, allocate
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
    _memo: dict[tuple[str | None, ...], Allocation] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

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
        return {name: len(getattr(self, name)) for name in SECTIONS}

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
