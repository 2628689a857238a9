"""Gateway keys in the console: a user sees and issues keys of the applications its scope
admits (an application counts with its business unit, cost center and budget owner from the
latest registry); the secret is returned once."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from spendtrail.access.principal import Principal
from spendtrail.access.roles import AccessDenied, Permission
from spendtrail.console.errors import NotFound
from spendtrail.console.owners import application_owners
from spendtrail.console.types import IssuedKey, KeyItem, KeyRequest
from spendtrail.gateway.keys import (
    GatewayKey,
    GatewayKeyError,
    create_key,
    get_key,
    load_keys,
    revoke_key,
)


def keys(engine: sa.Engine, who: Principal) -> list[KeyItem]:
    who.require(Permission.read)
    with engine.connect() as conn:
        owners = application_owners(conn)
        found = load_keys(conn)
    return [_item(k) for k in found if _admits(who, owners, k.application)]


def issue(engine: sa.Engine, who: Principal, request: KeyRequest) -> IssuedKey:
    who.require(Permission.manage_keys)
    with engine.begin() as conn:
        if not _admits(who, application_owners(conn), request.application):
            raise AccessDenied(
                f"{who.name} may not issue keys for application "
                f"{request.application!r}: not in its scope"
            )
        key, secret = create_key(
            conn,
            application=request.application,
            environment=request.environment,
            actor=who.actor,
            reason=request.reason,
        )
    return IssuedKey(key=_item(key), secret=secret)


def revoke(engine: sa.Engine, who: Principal, key_id: str, reason: str = "") -> KeyItem:
    who.require(Permission.manage_keys)
    with engine.begin() as conn:
        try:
            key = get_key(conn, key_id)
        except GatewayKeyError as exc:
            raise NotFound(str(exc)) from None
        if not _admits(who, application_owners(conn), key.application):
            raise NotFound(f"no gateway key with id {key_id!r}")
        return _item(revoke_key(conn, key_id, actor=who.actor, reason=reason))


def _admits(who: Principal, owners: dict[str, dict[str, str]], application: str) -> bool:
    return who.scope.admits(owners.get(application, {"application": application}))


def _item(key: GatewayKey) -> KeyItem:
    return KeyItem(
        id=key.id,
        application=key.application,
        environment=key.environment,
        prefix=key.key_prefix,
        created_at=key.created_at,
        created_by=key.created_by,
        revoked_at=key.revoked_at,
        active=key.active(datetime.now(UTC)),
    )
