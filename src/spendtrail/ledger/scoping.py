"""A user's ``AccessScope`` (``spendtrail.access.scope``) as SQL: the condition every scoped
query adds, so a scoped user's rows are the ones ``AccessScope.admits`` would keep."""

from __future__ import annotations

import sqlalchemy as sa

from spendtrail.access.scope import OWNER_ATTRIBUTES, AccessScope


def scope_condition(scope: AccessScope, table: sa.FromClause) -> sa.ColumnElement[bool]:
    """Rows of ``table`` (with owner columns and ``allocation_status``) visible in ``scope``."""
    if scope.everyone:
        return sa.true()
    return sa.and_(table.c.allocation_status != "quarantined", owner_condition(scope, table))


def owner_condition(scope: AccessScope, table: sa.FromClause) -> sa.ColumnElement[bool]:
    """Rows of ``table`` (with owner columns) naming one of the scope's owners; a row naming
    no owner (company-wide) only for everyone."""
    if scope.everyone:
        return sa.true()
    matches = [table.c[a].in_(sorted(scope.named(a))) for a in OWNER_ATTRIBUTES if scope.named(a)]
    return sa.or_(*matches) if matches else sa.false()
