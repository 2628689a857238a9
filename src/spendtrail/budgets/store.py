"""Budget definitions in the ledger. Every change is audited with its before, after and reason
in the same transaction."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Literal

import sqlalchemy as sa

from spendtrail.budgets.model import Budget, BudgetError
from spendtrail.ledger.audit import record_change
from spendtrail.ledger.registry_versions import load_history
from spendtrail.ledger.schema import budget_alerts, budgets
from spendtrail.registry import Registry

_FIELDS = tuple(Budget.__dataclass_fields__)


def list_budgets(conn: sa.Connection) -> list[Budget]:
    rows = conn.execute(sa.select(*(budgets.c[f] for f in _FIELDS)).order_by(budgets.c.id))
    return [Budget.from_record(dict(row._mapping)) for row in rows]


def get_budget(conn: sa.Connection, budget_id: str) -> Budget | None:
    row = conn.execute(
        sa.select(*(budgets.c[f] for f in _FIELDS)).where(budgets.c.id == budget_id)
    ).first()
    return None if row is None else Budget.from_record(dict(row._mapping))


def list_alerts(
    conn: sa.Connection, budget_id: str, period_start: date
) -> list[tuple[int, datetime]]:
    """The soft thresholds a budget crossed in the period starting `period_start`, with when,
    lowest threshold first."""
    a = budget_alerts.c
    rows = conn.execute(
        sa.select(a.threshold, a.at)
        .where(a.budget_id == budget_id, a.period_start == period_start)
        .order_by(a.threshold)
    )
    return [(threshold, at) for threshold, at in rows]


def check_scope(budget: Budget, registry: Registry) -> None:
    """The scope value must name an owner in the registry (the shared pool counts as an
    application): a budget on a misspelt owner would never match a call."""
    known: set[str] = set(getattr(registry, budget.scope + "s"))
    if budget.scope == "application":
        known.add(registry.shared_pool.id)
    if budget.scope_value not in known:
        raise BudgetError(
            f"{budget.scope} {budget.scope_value!r} is not in the registry; known: "
            f"{', '.join(sorted(known)) or 'none'}"
        )
    if budget.environment is not None and budget.environment not in registry.environments:
        raise BudgetError(f"environment {budget.environment!r} is not in the registry")


def save_budget(
    conn: sa.Connection, budget: Budget, *, actor: str, reason: str
) -> Literal["created", "changed", "unchanged"]:
    before = get_budget(conn, budget.id)
    if before == budget:
        return "unchanged"
    now = datetime.now(UTC)
    record = budget.to_record()
    if before is None:
        conn.execute(budgets.insert().values(**record, created_at=now, updated_at=now))
    else:
        conn.execute(
            budgets.update().where(budgets.c.id == budget.id).values(**record, updated_at=now)
        )
    record_change(
        conn, actor=actor, action="create" if before is None else "update",
        object_type="budget", object_id=budget.id,
        before=None if before is None else before.to_record(), after=record, reason=reason,
    )
    return "created" if before is None else "changed"


def put_budget(
    conn: sa.Connection, budget: Budget, *, actor: str, reason: str
) -> Literal["created", "changed", "unchanged"]:
    """Save a whole budget definition, its owner checked against the latest registry."""
    found = load_history(conn).latest()
    if found is None:
        raise BudgetError("no registry loaded; load one with `spendtrail registry load FILE` first")
    check_scope(budget, found[1])
    return save_budget(conn, budget, actor=actor, reason=reason)


def delete_budget(conn: sa.Connection, budget_id: str, *, actor: str, reason: str) -> Budget:
    before = get_budget(conn, budget_id)
    if before is None:
        raise BudgetError(f"no budget {budget_id!r}")
    conn.execute(budgets.delete().where(budgets.c.id == budget_id))
    record_change(
        conn, actor=actor, action="delete", object_type="budget", object_id=budget_id,
        before=before.to_record(), reason=reason,
    )
    return before
