"""The owner registry: load it from YAML, validate allocation contexts, keep its versions."""

from spendtrail.registry.allocation import REASON_CODES, Allocation, quarantine
from spendtrail.registry.changes import SectionChanges, registry_changes
from spendtrail.registry.errors import RegistryError
from spendtrail.registry.loader import load_registry, parse_registry
from spendtrail.registry.model import (
    Application,
    BudgetOwner,
    BusinessUnit,
    CostCenter,
    Environment,
    Registry,
    WorkloadClass,
)
from spendtrail.registry.store import (
    RegistryHistory,
    RegistryVersion,
    document_json,
    save_version,
)

__all__ = [
    "REASON_CODES",
    "Allocation",
    "Application",
    "BudgetOwner",
    "BusinessUnit",
    "CostCenter",
    "Environment",
    "Registry",
    "RegistryError",
    "RegistryHistory",
    "RegistryVersion",
    "SectionChanges",
    "WorkloadClass",
    "document_json",
    "load_registry",
    "parse_registry",
    "quarantine",
    "registry_changes",
    "save_version",
]
