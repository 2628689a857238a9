"""The OpenAI-compatible gateway (docs/gateway.md): authenticates callers with spendtrail keys,
forwards each call to the upstream provider its model is routed to, and journals every
attempt as a UsageEvent. It builds events with ``events.usage`` and ``events.linking``, which
the in-process hook shares.

- ``routes.py``: which upstream serves a model, from a reviewed routes file.
- ``config.py``: the routes or one upstream's profile, keys from the environment, the header
  policy.
- ``keys.py``: gateway keys, shown once, stored as a hash.
- ``headers.py``: what request header values may hold, checked before anything reads them.
- ``identity.py``: who a call belongs to, checked against the registry.
- ``budget.py``: where budget enforcement plugs into the request path.
- ``state.py``: keys, registry and prices loaded into memory, reloaded on change.
- ``proxy.py``: one call forwarded and recorded as exactly one event.
- ``client.py``: the HTTP/1.1 client calls go to providers with.
- ``errors.py``: errors in the OpenAI shape.
- ``metrics.py``: counters in the Prometheus text format.
- ``app.py``: the aiohttp application; loaded on first use (aiohttp is heavy).
- ``polling.py``: the event loop's selector, polling briefly before it sleeps.
- ``workers.py``: ``--workers N``: one socket per worker on one port, a supervising parent
  that restarts workers and runs the host's one ingester.
"""

from typing import TYPE_CHECKING, Any

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
from spendtrail.gateway.routes import Routes, RoutesError, Upstream, load_routes

if TYPE_CHECKING:
    from spendtrail.gateway.app import GatewayServer, make_app, serve

_SERVER = ("GatewayServer", "make_app", "serve")

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
    "Routes",
    "RoutesError",
    "Upstream",
    "create_key",
    "load_keys",
    "load_policy",
    "load_routes",
    "make_app",
    "revoke_key",
    "rotate_key",
    "serve",
    "upstream_key",
]


def __getattr__(name: str) -> Any:
    # The server (aiohttp) loads on first use: `spendtrail keys ...` and the other commands
    # that only touch keys or policy start faster without it.
    if name in _SERVER:
        from spendtrail.gateway import app

        return getattr(app, name)
    raise AttributeError(f"module 'spendtrail.gateway' has no attribute {name!r}")
