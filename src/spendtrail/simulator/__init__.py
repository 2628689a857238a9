"""A named test double of an OpenAI-compatible provider that bills like CometAPI
(docs/simulator.md).

Deterministic usage, configurable latency and faults, and a provider-side usage log in
CometAPI's export format, so the gateway, the demo, the benchmarks and reconciliation can be
exercised without a real provider.

- ``config.py``: what it charges, which keys it accepts, how it misbehaves.
- ``usage.py``: token counts as a pure function of the request.
- ``usage_log.py``: the usage log in CometAPI's format, and how a call is billed.
- ``app.py``: the aiohttp application; ``server.py``: running it (loaded on first use).
"""

from typing import TYPE_CHECKING, Any

from spendtrail.simulator.config import (
    DEFAULT_PRICES,
    FAULTS,
    ModelPrice,
    SimulatorConfig,
    SimulatorConfigError,
    load_keys,
    load_prices,
    spread_error_rate,
)
from spendtrail.simulator.usage_log import CSV_HEADER, QUOTA_PER_USD, quota_for

if TYPE_CHECKING:
    from spendtrail.simulator.app import FAULT_HEADER, REQUEST_ID_HEADER, make_app
    from spendtrail.simulator.server import run_simulator, serve_in_thread

# The server (aiohttp) loads on first use, so the CLI starts without it.
_SERVER = {"FAULT_HEADER": "app", "REQUEST_ID_HEADER": "app", "make_app": "app",
           "run_simulator": "server", "serve_in_thread": "server"}

__all__ = [
    "CSV_HEADER", "DEFAULT_PRICES", "FAULTS", "FAULT_HEADER", "QUOTA_PER_USD",
    "REQUEST_ID_HEADER", "ModelPrice", "SimulatorConfig", "SimulatorConfigError", "load_keys",
    "load_prices", "make_app", "quota_for", "run_simulator", "serve_in_thread",
    "spread_error_rate",
]


def __getattr__(name: str) -> Any:
    if name in _SERVER:
        from importlib import import_module

        return getattr(import_module(f"spendtrail.simulator.{_SERVER[name]}"), name)
    raise AttributeError(f"module 'spendtrail.simulator' has no attribute {name!r}")
