"""Test data shared by several test modules: a seeded ledger's registry, price sheet and gateway
key, events, and the events a spool folder holds."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from spendtrail.events import (
    AllocationContext,
    Usage,
    UsageEvent,
    decode_event,
    encode_event,
    new_event,
)
from spendtrail.gateway import create_key
from spendtrail.journal.intents import is_intent
from spendtrail.ledger.db import open_ledger
from spendtrail.ledger.prices import add_entries
from spendtrail.ledger.registry_versions import save_version
from spendtrail.pricing import load_sheet
from spendtrail.registry import Registry, load_registry

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
# What gateway_upstream.CLAUDE_USAGE (a new-api Claude call) is as meters.
CLAUDE_METERS = Usage(
    input_tokens=3000,
    cached_input_tokens=1000,
    cache_write_tokens=1500,
    cache_write_1h_tokens=400,
    output_tokens=40,
    requests=1,
)


def example_registry() -> Registry:
    return load_registry(ROOT / "examples" / "registry.yaml")


def save_example_registry(conn: sa.Connection) -> None:
    save_version(conn, example_registry(), source_path="examples/registry.yaml", actor="test")


def seed_books(conn: sa.Connection, tmp_dir: Path, sheet: str = SHEET) -> None:
    """Save the example registry and a price sheet (its YAML text, written to
    tmp_dir/prices.yaml) in the ledger."""
    path = tmp_dir / "prices.yaml"
    path.write_text(sheet)
    save_example_registry(conn)
    add_entries(conn, load_sheet(path), actor="test")


def gateway_ledger(url: str, tmp_dir: Path, application: str = "support-assistant") -> str:
    """Migrate the ledger at `url`, seed its books and create a production gateway key of
    `application`; returns the key's value."""
    engine = open_ledger(url)
    with engine.begin() as conn:
        seed_books(conn, tmp_dir)
        _, key = create_key(conn, application=application, environment="production", actor="test")
    engine.dispose()
    return key


def sqlite_gateway_ledger(tmp_dir: Path) -> tuple[str, str]:
    """A SQLite ledger in `tmp_dir` prepared by `gateway_ledger`: (its url, the key)."""
    url = f"sqlite:///{tmp_dir / 'ledger.db'}"
    return url, gateway_ledger(url, tmp_dir)


def event(app="search-summaries", env="production", model="gpt-4o-mini", **usage):
    return new_event(
        started_at=AT, provider="cometapi", model_requested=model,
        context=AllocationContext(application=app, environment=env, workload_class="batch"),
        usage=Usage(**(usage or {"input_tokens": 1000, "output_tokens": 500})),
    )


def write_jsonl(path: Path, items, tail: bytes = b"") -> Path:
    path.write_bytes(b"".join(encode_event(e) + b"\n" for e in items) + tail)
    return path


def journaled_events(directory: Path) -> list[UsageEvent]:
    """Every event in a spool folder, sealed or still open, in the order written (intent
    lines left out)."""
    while True:
        try:
            return [
                decode_event(line)
                for path in sorted(directory.glob("*.jsonl*"))
                for line in path.read_bytes().splitlines()
                if line.strip() and not is_intent(line)
            ]
        except FileNotFoundError:  # an open file was sealed meanwhile: read again
            continue
