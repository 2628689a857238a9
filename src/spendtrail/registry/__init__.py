"""The owner registry: load it from YAML, validate allocation contexts, say which version was
in effect when; pure (stored by ``spendtrail.ledger.registry_versions``)."""

from spendtrail.registry.allocation import REASON_CODES, Allocation, quarantine
from spendtrail.registry.changes import SectionChanges, registry_changes
from spendtrail.registry.errors import Problem, RegistryError
from spendtrail.registry.history import RegistryHistory, RegistryVersion
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

__all__ = [
    "REASON_CODES",
    "Allocation",
    "Application",
    "BudgetOwner",
    "BusinessUnit",
    "CostCenter",
    "Environment",
    "Problem",
    "Registry",
    "RegistryError",
    "RegistryHistory",
    "RegistryVersion",
    "SectionChanges",
    "WorkloadClass",
    "load_registry",
    "parse_registry",
    "quarantine",
    "registry_changes",
]
