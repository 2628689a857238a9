"""The registry's applications a user may name, for the pages' choices (assign an exception
to, issue a key for, set a budget on): the latest registry's, each with its business unit,
cost center and budget owner, kept when the user's scope admits it."""

from __future__ import annotations

import sqlalchemy as sa

from spendtrail.access.principal import Principal
from spendtrail.access.roles import Permission
from spendtrail.ledger.registry_versions import load_history


def applications(engine: sa.Engine, who: Principal) -> list[str]:
    who.require(Permission.read)
    with engine.connect() as conn:
        latest = load_history(conn).latest()
    if latest is None:
        return []
    registry = latest[1]
    return sorted(
        a.id for a in (*registry.applications.values(), registry.shared_pool)
        if who.scope.admits({"application": a.id, "business_unit": a.business_unit,
                             "cost_center": a.cost_center, "budget_owner": a.budget_owner}))
