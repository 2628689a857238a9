"""The registry's applications with their owners, for what is decided per application (whose
gateway key it is) and for the pages' choices (assign an exception to, issue a key for, set a
budget on): the latest registry's, each with its business unit, cost center and budget owner,
so a scope that names any of them admits the application."""

from __future__ import annotations

import sqlalchemy as sa

from spendtrail.access.principal import Principal
from spendtrail.access.roles import Permission
from spendtrail.ledger.registry_versions import load_history


def application_owners(conn: sa.Connection) -> dict[str, dict[str, str]]:
    """Application id -> its owner attributes, from the latest registry."""
    latest = load_history(conn).latest()
    if latest is None:
        return {}
    registry = latest[1]
    return {
        a.id: {
            "application": a.id,
            "business_unit": a.business_unit,
            "cost_center": a.cost_center,
            "budget_owner": a.budget_owner,
        }
        for a in (*registry.applications.values(), registry.shared_pool)
    }


def applications(engine: sa.Engine, who: Principal) -> list[str]:
    """The applications ``who`` may name, by id."""
    who.require(Permission.read)
    with engine.connect() as conn:
        owners = application_owners(conn)
    return sorted(app for app, attributes in owners.items() if who.scope.admits(attributes))
