"""Console users, their API tokens and their login sessions. Every change is audited in the
caller's transaction; secrets are returned once and stored only as hashes
(``spendtrail.access.credentials``)."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from spendtrail.access.credentials import (
    TOKEN_PREFIX,
    hash_password,
    new_secret,
    password_matches,
    secret_hash,
)
from spendtrail.access.principal import Principal
from spendtrail.access.roles import Role
from spendtrail.access.scope import EVERYONE, AccessScope, parse_scope
from spendtrail.errors import SpendtrailError
from spendtrail.ledger.audit import record_change
from spendtrail.ledger.db import as_utc
from spendtrail.ledger.schema import api_tokens, console_sessions, users


class UserError(SpendtrailError):
    """An unknown or duplicate user or token, or a role and scope that do not fit."""


@dataclass(frozen=True, slots=True)
class User:
    id: int
    name: str
    role: Role
    scope: AccessScope
    created_at: datetime
    created_by: str
    disabled_at: datetime | None
    has_password: bool

    @property
    def principal(self) -> Principal:
        return Principal(self.id, self.name, self.role, self.scope)

    def record(self) -> dict[str, object]:
        return {
            "name": self.name,
            "role": str(self.role),
            "scope": self.scope.items(),
            "disabled_at": self.disabled_at,
        }


@dataclass(frozen=True, slots=True)
class ApiToken:
    id: str
    user: str
    name: str
    token_prefix: str
    created_at: datetime
    revoked_at: datetime | None


def fitting_scope(role: Role, items: list[str]) -> AccessScope:
    """Admins and finance see every owner; an owner sees only the owners it names (at
    least one); a viewer sees every owner unless owners are named."""
    scope = parse_scope(items) if items else EVERYONE
    if role in (Role.admin, Role.finance):
        if items and not scope.everyone:
            raise UserError(f"an {role} sees every owner; give no --scope")
        return EVERYONE
    if role is Role.owner and (not items or scope.everyone):
        raise UserError(
            "an owner user needs --scope naming its owners, e.g. "
            "application:search or cost-center:CC-100"
        )
    return scope


def add_user(
    conn: sa.Connection,
    *,
    name: str,
    role: Role,
    scope: AccessScope,
    password: str | None,
    actor: str,
) -> User:
    name = name.strip()
    if not name or len(name) > 200:
        raise UserError("a user name needs 1 to 200 characters")
    if _row(conn, users.c.name == name) is not None:
        raise UserError(f"user {name!r} exists already")
    now = datetime.now(UTC)
    user_id = conn.execute(
        users.insert().values(
            name=name,
            role=str(role),
            scope=json.dumps(scope.items()),
            password_hash=None if password is None else hash_password(password),
            created_at=now,
            created_by=actor,
        )
    ).inserted_primary_key[0]
    user = get_user(conn, name)
    record_change(
        conn,
        actor=actor,
        action="users.add",
        object_type="user",
        object_id=str(user_id),
        after=user.record(),
    )
    return user


def get_user(conn: sa.Connection, name: str) -> User:
    row = _row(conn, users.c.name == name)
    if row is None:
        raise UserError(f"no user {name!r}; `spendtrail users list` shows them")
    return _user(row)


def list_users(conn: sa.Connection) -> list[User]:
    return [_user(row) for row in conn.execute(sa.select(users).order_by(users.c.name)).mappings()]


def disable_user(conn: sa.Connection, name: str, *, actor: str, reason: str = "") -> User:
    """Disable a user: its tokens and sessions stop working at once (kept for the record)."""
    before = get_user(conn, name)
    if before.disabled_at is None:
        now = datetime.now(UTC)
        conn.execute(users.update().where(users.c.id == before.id).values(disabled_at=now))
        conn.execute(console_sessions.delete().where(console_sessions.c.user_id == before.id))
    after = get_user(conn, name)
    record_change(
        conn,
        actor=actor,
        action="users.disable",
        object_type="user",
        object_id=str(before.id),
        before=before.record(),
        after=after.record(),
        reason=reason,
    )
    return after


def authenticate(conn: sa.Connection, name: str, password: str) -> User | None:
    """The enabled user with this name and password, else None (the same work either way)."""
    row = _row(conn, users.c.name == name)
    stored = None if row is None or row["disabled_at"] is not None else row["password_hash"]
    return _user(row) if password_matches(stored, password) and row is not None else None


def create_token(
    conn: sa.Connection, user_name: str, *, name: str, actor: str
) -> tuple[ApiToken, str]:
    """A new API token for the user; returns it with the only copy of its secret."""
    user = get_user(conn, user_name)
    if user.disabled_at is not None:
        raise UserError(f"user {user_name!r} is disabled")
    value = new_secret(TOKEN_PREFIX)
    token_id = "tok_" + secrets.token_hex(8)
    now = datetime.now(UTC)
    conn.execute(
        api_tokens.insert().values(
            id=token_id,
            user_id=user.id,
            name=name,
            token_hash=secret_hash(value),
            token_prefix=value[:10],
            created_at=now,
            created_by=actor,
        )
    )
    token = ApiToken(token_id, user.name, name, value[:10], now, None)
    record_change(
        conn,
        actor=actor,
        action="tokens.create",
        object_type="api_token",
        object_id=token_id,
        after={"user": user.name, "name": name, "prefix": token.token_prefix},
    )
    return token, value


def revoke_token(conn: sa.Connection, token_id: str, *, actor: str, reason: str = "") -> None:
    found = conn.execute(
        sa.select(api_tokens.c.revoked_at).where(api_tokens.c.id == token_id)
    ).first()
    if found is None:
        raise UserError(f"no API token {token_id!r}")
    if found.revoked_at is None:
        conn.execute(
            api_tokens.update()
            .where(api_tokens.c.id == token_id)
            .values(revoked_at=datetime.now(UTC))
        )
        record_change(
            conn,
            actor=actor,
            action="tokens.revoke",
            object_type="api_token",
            object_id=token_id,
            reason=reason,
        )


def list_tokens(conn: sa.Connection) -> list[ApiToken]:
    t, u = api_tokens.c, users.c
    rows = conn.execute(
        sa.select(t.id, u.name.label("user"), t.name, t.token_prefix, t.created_at, t.revoked_at)
        .join_from(api_tokens, users)
        .order_by(t.created_at, t.id)
    )
    return [
        ApiToken(r.id, r.user, r.name, r.token_prefix, as_utc(r.created_at), as_utc(r.revoked_at))
        for r in rows
    ]


def token_user(conn: sa.Connection, value: str) -> User | None:
    """The enabled user holding this unrevoked API token."""
    t = api_tokens.c
    row = _row(
        conn,
        users.c.id
        == sa.select(t.user_id)
        .where(t.token_hash == secret_hash(value), t.revoked_at.is_(None))
        .scalar_subquery(),
    )
    return None if row is None or row["disabled_at"] is not None else _user(row)


def open_session(conn: sa.Connection, user: User, *, lifetime: timedelta) -> tuple[str, str]:
    """A login session: returns (session id for the cookie, CSRF token for the forms)."""
    session, csrf = new_secret(), new_secret()
    now = datetime.now(UTC)
    conn.execute(console_sessions.delete().where(console_sessions.c.expires_at < now))
    conn.execute(
        console_sessions.insert().values(
            session_hash=secret_hash(session),
            user_id=user.id,
            csrf_token=csrf,
            created_at=now,
            expires_at=now + lifetime,
        )
    )
    return session, csrf


def session_user(conn: sa.Connection, session: str) -> tuple[User, str] | None:
    """The enabled user of an unexpired session, with the session's CSRF token."""
    s = console_sessions.c
    found = conn.execute(
        sa.select(s.user_id, s.csrf_token, s.expires_at).where(
            s.session_hash == secret_hash(session)
        )
    ).first()
    if found is None or as_utc(found.expires_at) <= datetime.now(UTC):
        return None
    row = _row(conn, users.c.id == found.user_id)
    if row is None or row["disabled_at"] is not None:
        return None
    return _user(row), found.csrf_token


def close_session(conn: sa.Connection, session: str) -> None:
    conn.execute(
        console_sessions.delete().where(console_sessions.c.session_hash == secret_hash(session))
    )


def _row(conn: sa.Connection, where: sa.ColumnElement[bool]) -> sa.RowMapping | None:
    return conn.execute(sa.select(users).where(where)).mappings().first()


def _user(row: sa.RowMapping) -> User:
    return User(
        row["id"],
        row["name"],
        Role(row["role"]),
        parse_scope(json.loads(row["scope"])),
        as_utc(row["created_at"]),
        row["created_by"],
        as_utc(row["disabled_at"]),
        row["password_hash"] is not None,
    )
