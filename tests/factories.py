"""Test data shared by several test modules: a seeded ledger's price sheet and events."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from spendtrail.events import AllocationContext, Usage, encode_event, new_event

ROOT = Path(__file__).resolve().parent.parent
SHEET = """
defaults:
  provider: cometapi
  currency: USD
  kind: contracted
  effective_from: 2026-01-01
  source_url: https://api.cometapi.com/pricing
  checked_at: 2026-10-01
  checked_by: finance-partner
prices:
  - model: gpt-4o-mini
    prices: {input_tokens: "0.15", cached_input_tokens: "0.075", output_tokens: "0.60"}
  - model: gpt-4o
    prices: {input_tokens: "2.50", output_tokens: "10.00"}
"""
AT = datetime(2026, 10, 5, 12, tzinfo=UTC)


def event(app="search-summaries", env="production", model="gpt-4o-mini", **usage):
    return new_event(
        started_at=AT, provider="cometapi", model_requested=model,
        context=AllocationContext(application=app, environment=env, workload_class="batch"),
        usage=Usage(**(usage or {"input_tokens": 1000, "output_tokens": 500})),
    )


def write_jsonl(path: Path, items, tail: bytes = b"") -> Path:
    path.write_bytes(b"".join(encode_event(e) + b"\n" for e in items) + tail)
    return path
