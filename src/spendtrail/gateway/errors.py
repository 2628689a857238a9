"""Errors in the OpenAI shape, so the openai SDK raises its usual exception classes.

``type`` follows OpenAI's names; ``code`` is spendtrail's own and stable, for callers that
branch on it.
"""

from __future__ import annotations

import msgspec
from aiohttp import web

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    431: "invalid_request_error",
    502: "upstream_error",
    504: "timeout_error",
}


def error_body(status: int, message: str, code: str, param: str | None = None) -> bytes:
    return msgspec.json.encode(
        {
            "error": {
                "message": message,
                "type": _TYPES.get(status, "api_error"),
                "param": param,
                "code": code,
            }
        }
    )


def error_response(
    status: int,
    message: str,
    code: str,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    return web.Response(
        status=status,
        body=error_body(status, message, code, param),
        content_type="application/json",
        headers=headers,
    )


def sse_error(status: int, message: str, code: str) -> bytes:
    """An error event for a stream already under way: the openai SDK raises APIError on it."""
    return b"data: " + error_body(status, message, code) + b"\n\n"
