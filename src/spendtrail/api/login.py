"""Logging in and out with a password: a session cookie (HttpOnly, SameSite=Lax, Secure
over https or when configured) and the CSRF token that goes with it. Failed attempts are
limited per user name and per client address (``spendtrail.access.ratelimit``)."""

from __future__ import annotations

import math
import time
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi.concurrency import run_in_threadpool

from spendtrail.api.auth import SESSION_COOKIE, Caller, engine_of, identify, settings_of
from spendtrail.api.errors import RESPONSES, TooManyAttempts, Unauthenticated
from spendtrail.console.types import Me
from spendtrail.console.users import me
from spendtrail.ledger.users import User, authenticate, close_session, open_session

router = APIRouter(prefix="/api/v1/auth", tags=["auth"], responses=RESPONSES)


@router.post(
    "/login",
    response_model=Me,
    responses={429: {"description": "Too many failed attempts; see Retry-After."}},
)
async def login(
    request: Request,
    response: Response,
    name: Annotated[str, Form(min_length=1, max_length=200)],
    password: Annotated[str, Form(min_length=1, max_length=1000)],
) -> Me:
    """Log in with a name and password (a form post); sets the session cookie and returns
    the CSRF token that writes made with it must carry."""
    limiter, settings = request.app.state.login_limiter, settings_of(request)
    keys = [f"user:{name}", f"client:{request.client.host if request.client else ''}"]
    wait = limiter.retry_after(keys, time.monotonic())
    if wait > 0:
        raise TooManyAttempts("too many failed logins; try again later", math.ceil(wait))
    engine = engine_of(request)

    def check() -> tuple[User, str, str] | None:
        with engine.begin() as conn:
            user = authenticate(conn, name, password)
            if user is None:
                return None
            session, csrf = open_session(
                conn, user, lifetime=timedelta(hours=settings.session_hours)
            )
            return user, session, csrf

    found = await run_in_threadpool(check)
    if found is None:
        limiter.failed(keys, time.monotonic())
        raise Unauthenticated("wrong name or password, or the user is disabled")
    user, session, csrf = found
    response.set_cookie(
        SESSION_COOKIE,
        session,
        max_age=settings.session_hours * 3600,
        httponly=True,
        samesite="lax",
        path="/",
        secure=settings.secure_cookies or request.url.scheme == "https",
    )
    return me(user.principal, csrf)


@router.post("/logout", status_code=204, response_class=Response)
def logout(request: Request, caller: Annotated[Caller, Depends(identify)]) -> Response:
    """End the cookie's session (a token or trusted-header caller has none to end)."""
    if caller.session is not None:
        with engine_of(request).begin() as conn:
            close_session(conn, caller.session)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
