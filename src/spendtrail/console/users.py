"""Who the console serves: the current user, and the user list for admins."""

from __future__ import annotations

import sqlalchemy as sa

from spendtrail.access.principal import Principal
from spendtrail.access.roles import Permission
from spendtrail.console.types import Me, UserItem
from spendtrail.ledger.users import list_users


def me(who: Principal, csrf_token: str | None = None) -> Me:
    return Me(name=who.name, role=str(who.role), scope=who.scope.items(), csrf_token=csrf_token)


def users(engine: sa.Engine, who: Principal) -> list[UserItem]:
    who.require(Permission.manage_users)
    with engine.connect() as conn:
        return [
            UserItem(
                name=u.name,
                role=str(u.role),
                scope=u.scope.items(),
                created_at=u.created_at,
                disabled=u.disabled_at is not None,
            )
            for u in list_users(conn)
        ]
