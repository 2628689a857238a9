"""One JSON GET with bounded retries: 429 and 5xx (and a dropped connection) are tried again
after the server's ``Retry-After`` when it sends one, else after an exponential backoff.

Errors name the URL without its query's secrets (keys travel in headers, never in the URL) and
the provider's own message, read from the three error shapes: OpenAI ``{"error": {"message"}}``,
Anthropic ``{"type": "error", "error": {"type", "message"}}``, new-api ``{"success": false,
"message"}`` (which new-api may send with status 200).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any

from spendtrail.errors import SpendtrailError
from spendtrail.redact import redact

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504, 529})
MAX_RETRY_AFTER = 300.0  # seconds: a longer wait is cut to this


class FetchError(SpendtrailError):
    """A provider API call that failed for good (after its retries, or at once for a 4xx)."""


@dataclass(frozen=True, slots=True)
class Retrying:
    attempts: int = 5  # in all, the first included
    backoff: float = 1.0  # seconds before the second attempt, doubled after each retry
    timeout: float = 60.0  # per request


@dataclass
class CallCounts:
    requests: int = 0
    retries: int = 0


def get_json(
    url: str,
    params: Sequence[tuple[str, str]],
    headers: Mapping[str, str],
    *,
    retrying: Retrying,
    counts: CallCounts,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """GET `url` with `params` and return its JSON object (numbers with a fraction as Decimal).
    Raises FetchError when the answer is an error that retrying does not mend, or after the
    last attempt."""
    full = f"{url}?{urllib.parse.urlencode(params)}" if params else url
    request = urllib.request.Request(full, headers={"Accept": "application/json", **headers})
    for attempt in range(1, retrying.attempts + 1):
        counts.requests += 1
        try:
            with urllib.request.urlopen(request, timeout=retrying.timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            text = exc.read()
            if exc.code not in RETRY_STATUSES or attempt == retrying.attempts:
                raise FetchError(_safe(_failure(url, exc.code, text, attempt), headers)) from None
            wait = _retry_after(exc.headers.get("Retry-After"))
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            if attempt == retrying.attempts:
                reason = getattr(exc, "reason", exc)
                raise FetchError(f"{url}: no answer after {attempt} attempts: {reason}") from None
            wait = None
        else:
            try:
                return _decode(url, body)
            except FetchError as bad:
                raise FetchError(_safe(str(bad), headers)) from None
        counts.retries += 1
        sleep(retrying.backoff * 2 ** (attempt - 1) if wait is None else wait)
    raise AssertionError("unreachable: the last attempt returns or raises")


def _safe(message: str, headers: Mapping[str, str]) -> str:
    """A message quoting the provider, with the key we sent and any other credential masked
    (an error body may echo the key)."""
    for name, value in headers.items():
        secret = value.removeprefix("Bearer ").strip()
        if name.lower() in ("authorization", "x-api-key") and secret:
            message = message.replace(secret, "<redacted>")
    return redact(message)


def _decode(url: str, body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body, parse_float=Decimal)
    except ValueError:
        raise FetchError(f"{url}: the answer is not JSON: {body[:200]!r}") from None
    if not isinstance(value, dict):
        raise FetchError(f"{url}: expected a JSON object, got {type(value).__name__}")
    if value.get("success") is False:  # new-api reports some failures with status 200
        raise FetchError(f"{url}: {value.get('message') or 'the API reported a failure'}")
    return value


def _retry_after(header: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date); None if absent."""
    if not header:
        return None
    try:
        seconds = float(header)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(header).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _failure(url: str, status: int, body: bytes, attempts: int) -> str:
    message = body[:300].decode("utf-8", "replace")
    try:
        value = json.loads(body)
    except ValueError:
        value = None
    if isinstance(value, dict):
        error = value.get("error")
        if isinstance(error, dict) and error.get("message"):
            kind = error.get("type") or error.get("code")
            message = f"{kind}: {error['message']}" if kind else str(error["message"])
        elif value.get("message"):
            message = str(value["message"])
    tries = f" after {attempts} attempts" if attempts > 1 else ""
    return f"{url}: HTTP {status}{tries}: {message}"
