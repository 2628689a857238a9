"""The reviewed files the books rely on, loaded by admins through the console: the owner
registry and the shared-cost rules (the price sheet is in ``prices.py``). Each is checked
as the CLI checks it and stored as a new audited version."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from spendtrail.access.principal import Principal
from spendtrail.access.roles import Permission
from spendtrail.allocation.rule_store import save_rules_version
from spendtrail.allocation.rules import load_rules
from spendtrail.allocation.shared import check_rules
from spendtrail.console.types import Loaded
from spendtrail.console.uploads import Upload, keep
from spendtrail.errors import SpendtrailError
from spendtrail.ledger.registry_versions import load_history, save_version
from spendtrail.registry import load_registry


def load_registry_file(
    engine: sa.Engine, who: Principal, home: Path, upload: Upload, reason: str
) -> Loaded:
    who.require(Permission.load_reference)
    path = keep(home, upload)
    registry = load_registry(path)
    with engine.begin() as conn:
        version = save_version(
            conn, registry, source_path=path.name, actor=who.actor, reason=reason
        )
    return Loaded(what="registry", detail=f"registry version {version}")


def load_rules_file(
    engine: sa.Engine, who: Principal, home: Path, upload: Upload, reason: str
) -> Loaded:
    who.require(Permission.load_reference)
    path = keep(home, upload)
    rules = load_rules(path)
    with engine.begin() as conn:
        latest = load_history(conn).latest()
        if latest is None:
            raise SpendtrailError("no registry loaded; load one before shared-cost rules")
        check_rules(rules, latest[1])
        version = save_rules_version(
            conn, rules, source_path=path.name, actor=who.actor, reason=reason
        )
    return Loaded(what="shared-cost rules", detail=f"{len(rules)} rules, version {version}")
