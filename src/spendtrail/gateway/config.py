"""Gateway configuration: the upstreams (a routes table, or one upstream's profile and its
key from the environment), the header policy and the limits. Upstream keys are never part
of a repr, log line or message."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from spendtrail.errors import SpendtrailError
from spendtrail.gateway.budget import BudgetGate, NoBudgets
from spendtrail.gateway.identity import Policy
from spendtrail.gateway.routes import Routes

UPSTREAM_KEY_ENV = "SPENDTRAIL_UPSTREAM_KEY"


@dataclass(frozen=True, slots=True)
class Profile:
    base_url: str
    key_env: str  # read when SPENDTRAIL_UPSTREAM_KEY is not set
    api: str = "openai"  # how the key is sent: see routes.APIS


PROFILES: dict[str, Profile] = {
    "cometapi": Profile("https://api.cometapi.com/v1", "COMETAPI_KEY"),
    "openai": Profile("https://api.openai.com/v1", "OPENAI_API_KEY"),
    "anthropic": Profile("https://api.anthropic.com/v1", "ANTHROPIC_API_KEY", "anthropic"),
}


class GatewayConfigError(SpendtrailError):
    """A gateway setting that cannot be used."""


@dataclass(frozen=True, kw_only=True)
class GatewayConfig:
    """Either ``routes`` or one upstream (``upstream_url``, ``upstream_key``, ``provider``),
    which becomes a one-route table."""

    routes: Routes | None = None
    upstream_url: str | None = None
    upstream_key: str | None = field(default=None, repr=False)
    provider: str | None = None  # as in the price catalog and the events: "cometapi", ...
    ledger_url: str
    spool_dir: Path
    policy: Policy = field(default_factory=Policy)
    refresh_seconds: float = 2.0  # how soon a revoked key, new registry or price applies
    rotate_seconds: float = 2.0  # a spool file is sealed this old: the ledger's lag
    ingest: bool = False  # run the follow-mode ingester in the gateway process
    connect_timeout: float = 10.0
    read_timeout: float = 600.0  # longest silence from the provider, streams included
    max_request_bytes: int = 32 * 1024 * 1024
    max_response_bytes: int = 64 * 1024 * 1024  # non-streamed bodies
    spool_fsync: bool = False
    journal_url: str | None = None  # nats://...: the journal on JetStream, not the spool
    grace_seconds: float = 10.0  # on SIGINT/SIGTERM, how long calls in flight may finish
    budget: BudgetGate = field(default_factory=NoBudgets)
    # --workers N: the folder the workers share their counters in (metrics.py)
    metrics_dir: Path | None = None

    def __post_init__(self) -> None:
        single = (self.upstream_url, self.upstream_key, self.provider)
        if self.routes is None:
            if not all(single):
                raise GatewayConfigError("the gateway needs routes, or an upstream URL, key "
                                         "and provider")
            object.__setattr__(self, "routes", Routes.single(*single))
        elif any(single):
            raise GatewayConfigError("give the gateway routes or one upstream, not both")


def upstream_key(profile: str | None, environ: Mapping[str, str] = os.environ) -> str:
    """The provider key: SPENDTRAIL_UPSTREAM_KEY, else the profile's variable."""
    names = [UPSTREAM_KEY_ENV]
    if profile in PROFILES:
        names.append(PROFILES[profile].key_env)
    for name in names:
        if environ.get(name):
            return environ[name]
    raise GatewayConfigError(f"no upstream key: set {' or '.join(names)} in the gateway's "
                             "environment")


def load_policy(path: Path) -> Policy:
    """The header policy from a YAML file (schema: docs/gateway.md)."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise GatewayConfigError(f"{path}: cannot read the policy: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise GatewayConfigError(f"{path}: malformed YAML: {exc}") from None
    if not isinstance(document, dict):
        raise GatewayConfigError(f"{path}: expected a mapping with default and environments")
    return Policy.parse(document.get("policy", document), source=str(path))
