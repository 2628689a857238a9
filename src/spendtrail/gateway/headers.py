"""What request header values may hold, checked before anything else reads them.

A value the gateway cannot carry faithfully must be refused before the provider is called:
once the provider has answered, the call is billed and has to become an event. So:

- every value is valid UTF-8 (aiohttp hands undecodable bytes on as lone surrogates, which
  neither the journal nor the provider's client can encode);
- ``X-Spendtrail-*`` values are printable text (no control or format characters);
- ``Authorization`` and ``Idempotency-Key`` are printable ASCII, ``Idempotency-Key`` at most
  255 characters.

Lengths of context values (1 to 200 characters) and the tags syntax are checked by
``identity.resolve``; lines over aiohttp's 8190 bytes never reach here (431, see app.py).
A refusal names the header, never its value: it may be a key.
"""

from __future__ import annotations

from collections.abc import Mapping

from spendtrail.events.linking import IDEMPOTENCY_HEADER
from spendtrail.gateway.identity import CONTEXT_PREFIX, Refusal

_MAX_IDEMPOTENCY_KEY = 255
_ASCII_ONLY = ("authorization", IDEMPOTENCY_HEADER.lower())


def check_headers(headers: Mapping[str, str]) -> Refusal | None:
    """The first header whose value breaks the rules above, as a 400; None when all pass."""
    for name, value in headers.items():
        if value.isascii() and value.isprintable():  # what SDKs send: one fast test each
            continue
        problem = _problem(name.lower(), value)
        if problem is not None:
            return _bad(name, problem)
    idempotency_key = headers.get(IDEMPOTENCY_HEADER)
    if idempotency_key is not None and len(idempotency_key) > _MAX_IDEMPOTENCY_KEY:
        return _bad(IDEMPOTENCY_HEADER, f"at most {_MAX_IDEMPOTENCY_KEY} characters")
    return None


def _problem(lower: str, value: str) -> str | None:
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "the value is not valid UTF-8"
        if lower in _ASCII_ONLY:
            return "only printable ASCII characters are allowed"
    if (lower.startswith(CONTEXT_PREFIX) or lower in _ASCII_ONLY) and not value.isprintable():
        return "control or format characters are not allowed"
    return None


def _bad(name: str, problem: str) -> Refusal:
    return Refusal(400, f"{name}: {problem}", "invalid_header", str(name))
