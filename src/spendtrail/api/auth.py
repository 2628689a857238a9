"""Who a request is: a bearer API token (scripts), the session cookie (people, after
login), or, when configured, a trusted header set by an SSO proxy. Writes made with the
cookie or the trusted header also need the CSRF token (header ``X-CSRF-Token`` or form
field ``csrf_token``); a bearer token is never sent by a browser on its own, so it needs
none. ``require_user`` is the dependency every route (and later every page) takes."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated

import sqlalchemy as sa
from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from spendtrail.access.credentials import same
from spendtrail.access.principal import Principal
from spendtrail.api.errors import CsrfRefused, Unauthenticated
from spendtrail.api.settings import ApiSettings
from spendtrail.errors import SpendtrailError
from spendtrail.ledger.users import get_user, session_user, token_user

SESSION_COOKIE = "spendtrail_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

bearer = HTTPBearer(auto_error=False, description="An API token: `spendtrail tokens create`.")
cookie = APIKeyCookie(
    name=SESSION_COOKIE,
    auto_error=False,
    description="The session cookie set by POST /api/v1/auth/login.",
)
_HEADER_SECRET = secrets.token_bytes(32)  # signs trusted-header CSRF tokens, per process


@dataclass(frozen=True, slots=True)
class Caller:
    principal: Principal
    via: str  # token | session | header
    csrf_token: str | None  # None for bearer tokens
    session: str | None = None


def engine_of(request: Request) -> sa.Engine:
    return request.app.state.engine


def settings_of(request: Request) -> ApiSettings:
    return request.app.state.settings


async def identify(
    request: Request,
    token: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    session: Annotated[str | None, Depends(cookie)],
) -> Caller:
    """The caller, or 401; for a cookie or header caller's write, the CSRF check (403)."""
    engine, settings = engine_of(request), settings_of(request)
    caller = await run_in_threadpool(_caller, engine, settings, request, token, session)
    if caller is None:
        raise Unauthenticated("log in (POST /api/v1/auth/login) or send a bearer API token")
    if caller.via != "token" and request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER)
        if sent is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")
        ):
            field = (await request.form()).get(CSRF_FIELD)
            sent = field if isinstance(field, str) else None
        if sent is None or caller.csrf_token is None or not same(sent, caller.csrf_token):
            raise CsrfRefused(
                f"missing or wrong CSRF token: send {CSRF_HEADER} (from GET "
                "/api/v1/me) with every write made with the session cookie"
            )
    return caller


def require_user(caller: Annotated[Caller, Depends(identify)]) -> Principal:
    return caller.principal


# What a route (or a page) declares to get the user it acts for and the ledger.
CurrentUser = Annotated[Principal, Depends(require_user)]
Ledger = Annotated[sa.Engine, Depends(engine_of)]


def _caller(
    engine: sa.Engine,
    settings: ApiSettings,
    request: Request,
    token: HTTPAuthorizationCredentials | None,
    session: str | None,
) -> Caller | None:
    with engine.connect() as conn:
        if token is not None:
            user = token_user(conn, token.credentials)
            return None if user is None else Caller(user.principal, "token", None)
        header = settings.trusted_user_header
        if header and (name := request.headers.get(header)):
            try:
                user = get_user(conn, name)
            except SpendtrailError:
                return None
            if user.disabled_at is not None:
                return None
            return Caller(user.principal, "header", header_csrf(user.name))
        if session:
            found = session_user(conn, session)
            if found is not None:
                return Caller(found[0].principal, "session", found[1], session)
    return None


def header_csrf(name: str) -> str:
    return hmac.new(_HEADER_SECRET, name.encode(), hashlib.sha256).hexdigest()
