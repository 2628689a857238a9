"""Signing in to the pages, on the API's own login, sessions and CSRF check
(``spendtrail.api.auth``): a page takes ``page_user`` as an API route takes
``require_user``, except that a visitor who is not signed in is sent to the sign-in page
instead of getting a 401. Every form carries the session's CSRF token
(``render.csrf_field``), which ``identify`` checks on every post; the sign-in form, before
there is a session, carries a token that must match a cookie set with the form (double
submit).
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials

from spendtrail.access.credentials import same
from spendtrail.access.principal import Principal
from spendtrail.api import login as api_login
from spendtrail.api.auth import (
    CSRF_FIELD,
    SESSION_COOKIE,
    Caller,
    bearer,
    cookie,
    identify,
    settings_of,
)
from spendtrail.api.errors import CsrfRefused, TooManyAttempts, Unauthenticated
from spendtrail.errors import SpendtrailError
from spendtrail.web.render import render

LOGIN_CSRF_COOKIE = "spendtrail_login_csrf"
SHOWN_ONCE_SECONDS = 300  # a value not shown within this after its redirect is dropped
router = APIRouter(include_in_schema=False)


class SignInFirst(Exception):
    """Raised by ``page_user`` for a visitor with no session; answered with a redirect."""

    def __init__(self, path: str) -> None:
        self.path = path


class PageRefused(Exception):
    """A post without the session's CSRF token; answered with a 403 page."""


async def page_user(
    request: Request,
    token: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    session: Annotated[str | None, Depends(cookie)],
) -> Principal:
    try:
        caller: Caller = await identify(request, token, session)
    except Unauthenticated:
        raise SignInFirst(request.url.path) from None
    except CsrfRefused as error:
        raise PageRefused(str(error)) from None
    request.state.caller = caller
    return caller.principal


class ShownOnce:
    """What a page shows once after a post's redirect (POST-redirect-GET), such as a new
    key's secret: held in this process for the caller's session and removed by the GET
    that shows it, so a reload shows nothing. Never in the ledger or a cookie: the secret is
    stored nowhere and sent once."""

    def __init__(self) -> None:
        self._held: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def put(self, request: Request, value: Any) -> None:
        now = time.monotonic()
        with self._lock:
            self._held = {k: v for k, v in self._held.items() if now - v[0] < SHOWN_ONCE_SECONDS}
            self._held[_holder(request)] = (now, value)

    def take(self, request: Request) -> Any | None:
        with self._lock:
            found = self._held.pop(_holder(request), None)
        if found is None or time.monotonic() - found[0] >= SHOWN_ONCE_SECONDS:
            return None
        return found[1]


def _holder(request: Request) -> str:
    """The session a held value belongs to (a trusted-header or token caller's name)."""
    caller: Caller = request.state.caller
    return f"session:{caller.session}" if caller.session else f"user:{caller.principal.name}"


async def form_of(request: Request):
    """The posted form (its CSRF token was checked by ``page_user``)."""
    return await request.form()


@router.get("/login", name="page-login")
def login_page(request: Request) -> Response:
    return _login_form(request, next_path=_safe_next(request.query_params.get("next")))


@router.post("/login")
async def login(request: Request) -> Response:
    form = await request.form()
    next_path = _safe_next(str(form.get("next") or "/"))
    sent, expected = form.get(CSRF_FIELD), request.cookies.get(LOGIN_CSRF_COOKIE)
    if not isinstance(sent, str) or not expected or not same(sent, expected):
        return _login_form(request, next_path, "The sign-in form expired; try again.", 403)
    done = Response()
    try:
        await api_login.login(
            request,
            done,
            name=str(form.get("name") or ""),
            password=str(form.get("password") or ""),
        )
    except TooManyAttempts as error:
        return _login_form(request, next_path, str(error), 429)
    except (Unauthenticated, SpendtrailError, ValueError):
        return _login_form(
            request, next_path, "Wrong name or password, or the user is disabled.", 401
        )
    response = RedirectResponse(next_path, status_code=303)
    for name, value in done.raw_headers:
        if name == b"set-cookie":
            response.raw_headers.append((name, value))
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout", name="page-logout")
def logout(request: Request, who: Annotated[Principal, Depends(page_user)]) -> Response:
    api_login.logout(request, request.state.caller)
    response = RedirectResponse(str(request.url_for("page-login")), status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def _login_form(
    request: Request, next_path: str, error: str | None = None, status_code: int = 200
) -> Response:
    token = secrets.token_urlsafe(32)
    response = render(
        request,
        "login.html",
        None,
        status_code=status_code,
        title="Sign in",
        next=next_path,
        error=error,
        login_csrf=token,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        path="/login",
        secure=settings_of(request).secure_cookies or request.url.scheme == "https",
    )
    return response


def _safe_next(path: str | None) -> str:
    """Only a path on this site: never an address elsewhere (an open redirect)."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/"
    return quote(path, safe="/?&=%-._~:")
