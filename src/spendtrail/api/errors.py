"""The API's errors and their status codes: code raises, ``install`` maps, as Starlette's
exception middleware does. The body is always ``{"detail": message}``."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from spendtrail.access.roles import AccessDenied
from spendtrail.console.errors import NotFound
from spendtrail.errors import SpendtrailError


class ErrorBody(BaseModel):
    detail: str


class Unauthenticated(SpendtrailError):
    pass


class CsrfRefused(SpendtrailError):
    pass


class TooManyAttempts(SpendtrailError):
    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


STATUS: tuple[tuple[type[Exception], int], ...] = (
    (Unauthenticated, 401),
    (AccessDenied, 403),
    (CsrfRefused, 403),
    (NotFound, 404),
    (TooManyAttempts, 429),
    (SpendtrailError, 400),  # the domain's own refusals: bad input, a rule not met
)
# Declared on every route, so the OpenAPI document lists what a client can get.
RESPONSES: dict[int | str, dict] = {
    400: {"model": ErrorBody, "description": "Refused: bad input or a rule not met."},
    401: {"model": ErrorBody, "description": "Not logged in."},
    403: {"model": ErrorBody, "description": "Not allowed for this user, or no CSRF token."},
    404: {"model": ErrorBody, "description": "No such record in this user's view."},
}


def install(app: FastAPI) -> None:
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        status = next(code for kind, code in STATUS if isinstance(exc, kind))
        headers = {}
        if isinstance(exc, Unauthenticated):
            headers["WWW-Authenticate"] = "Bearer"
        if isinstance(exc, TooManyAttempts):
            headers["Retry-After"] = str(exc.retry_after)
        return JSONResponse({"detail": str(exc)}, status_code=status, headers=headers)

    app.add_exception_handler(SpendtrailError, handle)
