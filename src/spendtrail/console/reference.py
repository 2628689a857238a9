"""The reviewed files the books rely on, loaded by admins through the console: the owner
registry, a price sheet and the shared-cost rules. Each upload is kept, checked as the CLI
checks it and stored as a new audited version (or added entries, for prices)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

import sqlalchemy as sa

from spendtrail.access.principal import Principal
from spendtrail.access.roles import Permission
from spendtrail.allocation.rule_store import save_rules_version
from spendtrail.allocation.rules import load_rules
from spendtrail.allocation.shared import check_rules
from spendtrail.console.types import Loaded
from spendtrail.console.uploads import Upload, keep
from spendtrail.errors import SpendtrailError
from spendtrail.ledger.prices import add_entries
from spendtrail.ledger.registry_versions import load_history, save_version
from spendtrail.pricing import load_sheet
from spendtrail.registry import load_registry

Kind = Literal["registry", "price-sheet", "shared-cost-rules"]


def load_reference(
    engine: sa.Engine, who: Principal, home: Path, kind: Kind, upload: Upload, reason: str
) -> Loaded:
    who.require(Permission.load_reference)
    path = keep(home, upload)
    with engine.begin() as conn:
        detail = LOADERS[kind](conn, path, who.actor, reason or f"{kind} {path.name}")
    return Loaded(what=kind, detail=detail)


def _registry(conn: sa.Connection, path: Path, actor: str, reason: str) -> str:
    version = save_version(
        conn, load_registry(path), source_path=path.name, actor=actor, reason=reason
    )
    return f"registry version {version}"


def _price_sheet(conn: sa.Connection, path: Path, actor: str, reason: str) -> str:
    result = add_entries(conn, load_sheet(path), actor=actor, reason=reason)
    return (
        f"added {len(result.added)}, unchanged {len(result.unchanged)}, windows closed "
        f"{len(result.closed)}, re-checked {len(result.rechecked)}"
    )


def _rules(conn: sa.Connection, path: Path, actor: str, reason: str) -> str:
    rules = load_rules(path)
    latest = load_history(conn).latest()
    if latest is None:
        raise SpendtrailError("no registry loaded; load one before shared-cost rules")
    check_rules(rules, latest[1])
    version = save_rules_version(conn, rules, source_path=path.name, actor=actor, reason=reason)
    return f"{len(rules)} rules, shared-cost rules version {version}"


LOADERS: dict[str, Callable[[sa.Connection, Path, str, str], str]] = {
    "registry": _registry,
    "price-sheet": _price_sheet,
    "shared-cost-rules": _rules,
}
