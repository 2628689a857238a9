"""spendtrail: explainable AI API spend. ``spendtrail.instrument`` records an openai or anthropic
client's calls in process (see docs/hook.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from spendtrail.hook import instrument

__all__ = ["instrument"]


def __getattr__(name: str) -> Any:
    # Imported on first use: the hook loads the openai SDK (~0.3 s), which the CLI, the
    # ledger and the gateway do not need.
    if name == "instrument":
        from spendtrail.hook import instrument

        return instrument
    raise AttributeError(f"module 'spendtrail' has no attribute {name!r}")
