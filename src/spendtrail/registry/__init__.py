"""The owner registry (docs/registry.md): load it from YAML, validate allocation contexts, say
which version was in effect when. Pure: the ledger stores the versions
(``spendtrail.ledger.registry_versions``).

- ``model.py``: the registry, immutable; a change is a new version.
- ``allocation.py``: one allocation context checked: allocated, shared or quarantined.
- ``accounts.py``: provider accounts (organizations, projects, workspaces, API keys) and
  whose bill lines they are: an owner's, the gateway's, or unmapped.
- ``loader.py``: the registry YAML, every problem with its line.
- ``errors.py``: the registry error and its problems.
- ``changes.py``: what changed between two registries, entry by entry.
- ``history.py``: the versions in effect over time, and which one held when.
"""

from spendtrail.registry.accounts import ACCOUNT_KINDS, Claim, ProviderAccount
from spendtrail.registry.allocation import REASON_CODES, Allocation, quarantine
from spendtrail.registry.changes import SectionChanges, registry_changes
from spendtrail.registry.errors import RegistryError
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
    "ACCOUNT_KINDS",
    "REASON_CODES",
    "Allocation",
    "Application",
    "BudgetOwner",
    "BusinessUnit",
    "Claim",
    "CostCenter",
    "Environment",
    "ProviderAccount",
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
