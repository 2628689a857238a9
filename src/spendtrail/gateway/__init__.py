"""The OpenAI-compatible gateway: authenticates callers with spendtrail keys, forwards to
one upstream provider, and journals every attempt as a UsageEvent. See docs/gateway.md."""

from spendtrail.gateway.app import GatewayServer, make_app, serve
from spendtrail.gateway.budget import BudgetDecision, BudgetGate, NoBudgets
from spendtrail.gateway.config import (
    PROFILES,
    UPSTREAM_KEY_ENV,
    GatewayConfig,
    GatewayConfigError,
    load_policy,
    upstream_key,
)
from spendtrail.gateway.identity import Policy, PolicyError
from spendtrail.gateway.keys import (
    GatewayKey,
    GatewayKeyError,
    create_key,
    load_keys,
    revoke_key,
    rotate_key,
)

__all__ = [
    "PROFILES",
    "UPSTREAM_KEY_ENV",
    "BudgetDecision",
    "BudgetGate",
    "GatewayConfig",
    "GatewayConfigError",
    "GatewayKey",
    "GatewayKeyError",
    "GatewayServer",
    "NoBudgets",
    "Policy",
    "PolicyError",
    "create_key",
    "load_keys",
    "load_policy",
    "make_app",
    "revoke_key",
    "rotate_key",
    "serve",
    "upstream_key",
]
