"""Who a call belongs to: the key's application plus the context headers may add, checked
against the registry, and the per-environment policy for what the registry does not allow.

What the key fixes (application, and environment when the key names one) no header can
change: a header naming another value is refused with 403 whatever the policy, because
quarantining it could only either move the cost or drop the claim. Everything the registry
checks (environment, workload class, business unit, cost center, budget owner) follows the
policy of the call's environment: ``reject`` refuses the call naming the header and the
allowed values; ``quarantine`` serves it and records it for the exception queue. The policy
names environments it sets explicitly; any other environment rejects when the registry marks
it ``strict`` and takes the policy's default otherwise. An environment the registry does not
accept cannot choose a milder policy: the strictest policy among the application's
environments applies.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from spendtrail.errors import SpendtrailError
from spendtrail.events.model import AllocationContext
from spendtrail.gateway.keys import GatewayKey
from spendtrail.registry import Allocation, Application, Registry

Mode = Literal["reject", "quarantine"]
MODES: tuple[str, ...] = ("reject", "quarantine")

H_APPLICATION = "X-Spendtrail-Application"
H_ENVIRONMENT = "X-Spendtrail-Environment"
H_WORKLOAD = "X-Spendtrail-Workload"
H_JOB_ID = "X-Spendtrail-Job-Id"
H_TAGS = "X-Spendtrail-Tags"
H_BUSINESS_UNIT = "X-Spendtrail-Business-Unit"
H_COST_CENTER = "X-Spendtrail-Cost-Center"
H_BUDGET_OWNER = "X-Spendtrail-Budget-Owner"
CONTEXT_PREFIX = "x-spendtrail-"  # every header with it is ours and never goes upstream

_TAG_KEY = re.compile(r"^[A-Za-z0-9_.:/-]{1,64}$")
_MAX_TAGS = 20
_MAX_LABEL = 200


class PolicyError(SpendtrailError):
    """A policy configuration that cannot be used."""


@dataclass(frozen=True)
class Policy:
    """Environment -> mode, for the environments named; the others reject when the registry
    marks them strict (spend there must land on a known owner at once) and take `default`
    otherwise (a mislabelled staging or development call is better served and fixed from
    the exception queue)."""

    modes: Mapping[str, Mode] = field(default_factory=dict)
    default: Mode = "quarantine"

    @classmethod
    def parse(cls, document: Mapping[str, object], source: str = "policy") -> Policy:
        """From ``{default: MODE, environments: {ENV: MODE}}`` (see docs/gateway.md)."""
        unknown = set(document) - {"default", "environments"}
        if unknown:
            raise PolicyError(f"{source}: unknown keys {sorted(unknown)}; "
                              "allowed: default, environments")
        default = _mode(document.get("default", "quarantine"), f"{source}: default")
        environments = document.get("environments") or {}
        if not isinstance(environments, Mapping):
            raise PolicyError(f"{source}: environments: expected a mapping ENV: reject|quarantine")
        modes = {str(env): _mode(mode, f"{source}: environments.{env}")
                 for env, mode in environments.items()}
        return cls(modes, default)

    def mode_for(self, environment: str, *, strict: bool = False) -> Mode:
        """`strict`: what the registry says of the environment."""
        return self.modes.get(environment, "reject" if strict else self.default)

    def unknown_environments(self, registry: Registry) -> list[str]:
        """Environments the policy names that the registry does not know: most likely a
        typo or a renamed environment, whose rule then applies to nothing."""
        return sorted(set(self.modes) - set(registry.environments))


def _mode(value: object, where: str) -> Mode:
    if value not in MODES:
        raise PolicyError(f"{where}: expected reject or quarantine, got {value!r}")
    return value  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class Identity:
    context: AllocationContext
    status: str  # allocated | shared | quarantined
    reasons: tuple[str, ...] = ()
    allocation: Allocation | None = None  # the registry's verdict; None without a registry
    # Whose budgets the call counts against: the allocation, or for a quarantined call the
    # owner the key proves (docs/budgets.md, "Budgets follow the key").
    budgeted: Allocation | None = None


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    message: str
    code: str
    param: str | None


def resolve(
    key: GatewayKey, headers: Mapping[str, str], registry: Registry | None, policy: Policy
) -> Identity | Refusal:
    """The call's allocation context, or why it is refused."""
    claimed = headers.get(H_APPLICATION)
    if claimed is not None and claimed != key.application:
        return Refusal(403, f"{H_APPLICATION}: '{claimed}' is not allowed; this gateway key "
                       f"belongs to '{key.application}' (allowed: {key.application})",
                       "spendtrail_key_application", H_APPLICATION)
    environment = headers.get(H_ENVIRONMENT)
    if key.environment is not None and environment not in (None, key.environment):
        return Refusal(403, f"{H_ENVIRONMENT}: '{environment}' is not allowed; this gateway key "
                       f"is for '{key.environment}' (allowed: {key.environment})",
                       "spendtrail_key_environment", H_ENVIRONMENT)
    values: dict[str, str | None] = {}
    for name, header in (("environment", H_ENVIRONMENT), ("workload_class", H_WORKLOAD),
                         ("job_id", H_JOB_ID), ("business_unit", H_BUSINESS_UNIT),
                         ("cost_center", H_COST_CENTER), ("budget_owner", H_BUDGET_OWNER)):
        value = headers.get(header)
        if value is not None and not 0 < len(value) <= _MAX_LABEL:
            return Refusal(400, f"{header}: expected 1 to {_MAX_LABEL} characters",
                           "spendtrail_bad_header", header)
        values[name] = value
    tags = _tags(headers.get(H_TAGS))
    if isinstance(tags, Refusal):
        return tags
    context = AllocationContext(
        application=key.application,
        environment=values["environment"] or key.environment,
        workload_class=values["workload_class"],
        job_id=values["job_id"],
        business_unit=values["business_unit"],
        cost_center=values["cost_center"],
        budget_owner=values["budget_owner"],
        tags=tags,
    )
    if registry is None:  # nothing to check against: serve, and let ingest decide later
        return Identity(context, "quarantined", ("no_registry",))
    allocation = registry.validate(context)
    if allocation.status != "quarantined":
        return Identity(context, allocation.status, allocation=allocation, budgeted=allocation)
    owner = _owner(registry, key.application)
    if _policy_mode(policy, registry, owner, allocation.environment) == "quarantine":
        budgeted = None if owner is None else _key_owner(registry, owner, context)
        return Identity(context, "quarantined", allocation.reasons, allocation, budgeted)
    return _refusal(allocation.reasons, context, owner)


def _key_owner(registry: Registry, owner: Application, context: AllocationContext) -> Allocation:
    """The owner a gateway key proves, whatever else the context claims: its application
    and that application's business unit, cost center and budget owner. The environment
    only if it is one the application may use (else None: every environment's budgets)."""
    environment = context.environment or owner.default_environment
    return Allocation(
        status="shared" if owner is registry.shared_pool else "allocated",
        reasons=(),
        business_unit=owner.business_unit,
        application=owner.id,
        environment=environment if environment in owner.environments else None,
        workload_class=None,
        cost_center=owner.cost_center,
        budget_owner=owner.budget_owner,
    )


def _tags(header: str | None) -> dict[str, str] | Refusal:
    """``key=value`` pairs separated by commas."""
    if not header:
        return {}
    tags: dict[str, str] = {}
    for part in header.split(","):
        key, sep, value = (s.strip() for s in part.partition("="))
        if not sep or not _TAG_KEY.match(key) or not 0 < len(value) <= _MAX_LABEL:
            return Refusal(400, f"{H_TAGS}: expected key=value pairs separated by commas "
                           f"(keys of letters, digits and _.:/-; values 1 to {_MAX_LABEL} "
                           f"characters), got {part.strip()!r}", "spendtrail_bad_header", H_TAGS)
        tags[key] = value
    if len(tags) > _MAX_TAGS:
        return Refusal(400, f"{H_TAGS}: at most {_MAX_TAGS} tags", "spendtrail_bad_header",
                       H_TAGS)
    return tags


def _owner(registry: Registry, application: str) -> Application | None:
    pool = registry.shared_pool
    return pool if application == pool.id else registry.applications.get(application)


def _policy_mode(
    policy: Policy, registry: Registry, owner: Application | None, environment: str | None
) -> Mode:
    known = registry.environments
    if environment in known and (owner is None or environment in owner.environments):
        return policy.mode_for(environment, strict=known[environment].strict)
    candidates = owner.environments if owner is not None else tuple(known)
    modes = {policy.mode_for(env, strict=env in known and known[env].strict)
             for env in candidates} or {policy.default}
    return "reject" if "reject" in modes else "quarantine"


# reason -> (status, header, context field, what the header must name)
_REASONS: dict[str, tuple[int, str, str, str]] = {
    "missing_environment": (400, H_ENVIRONMENT, "environment", "is required"),
    "unknown_environment": (400, H_ENVIRONMENT, "environment", "is not in the registry"),
    "environment_not_allowed": (403, H_ENVIRONMENT, "environment", "is not allowed"),
    "missing_workload_class": (400, H_WORKLOAD, "workload_class", "is required"),
    "unknown_workload_class": (400, H_WORKLOAD, "workload_class", "is not in the registry"),
    "workload_not_allowed": (403, H_WORKLOAD, "workload_class", "is not allowed"),
    "unknown_business_unit": (400, H_BUSINESS_UNIT, "business_unit", "is not in the registry"),
    "unknown_cost_center": (400, H_COST_CENTER, "cost_center", "is not in the registry"),
    "unknown_budget_owner": (400, H_BUDGET_OWNER, "budget_owner", "is not in the registry"),
}


def _refusal(
    reasons: tuple[str, ...], context: AllocationContext, owner: Application | None
) -> Refusal:
    if owner is None:
        return Refusal(403, f"application '{context.application}' of this gateway key is not in "
                       "the registry in effect; ask for a key of a registered application",
                       "spendtrail_unknown_application", None)
    allowed = {
        "environment": owner.environments,
        "workload_class": owner.workload_classes,
        "business_unit": (owner.business_unit,),
        "cost_center": (owner.cost_center,),
        "budget_owner": (owner.budget_owner,),
    }
    problems: list[tuple[int, str, str]] = []
    for reason in reasons:
        if reason == "owner_conflict":
            for name, header in (("business_unit", H_BUSINESS_UNIT),
                                 ("cost_center", H_COST_CENTER),
                                 ("budget_owner", H_BUDGET_OWNER)):
                value = getattr(context, name)
                if value is not None and value != allowed[name][0]:
                    problems.append((403, header, f"{header}: '{value}' would move the call to "
                                     f"another owner than application '{owner.id}'s "
                                     f"(allowed: {allowed[name][0]})"))
            continue
        status, header, name, problem = _REASONS[reason]
        value = getattr(context, name)
        shown = f"'{value}' " if value is not None else ""
        problems.append((status, header, f"{header}: {shown}{problem} for application "
                         f"'{owner.id}' (allowed: {', '.join(allowed[name])})"))
    status = max(status for status, _, _ in problems)
    return Refusal(status, "; ".join(message for _, _, message in problems),
                   f"spendtrail_{reasons[0]}", problems[0][1])
