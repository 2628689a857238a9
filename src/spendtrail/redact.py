"""Finding and masking credential-shaped text before anything is stored, printed or exported.

One catalogue of detectors serves both ``redact`` (stored rejects, exports) and the evidence
linter, so a shape the linter flags is a shape every output masks. ``<API_KEY_PLACEHOLDER>`` is
the one sanctioned stand-in for a key in written examples; nothing here matches it. Other
stand-ins (``<YOUR_KEY>``, ``sk-xxxx``) are reported as ``credential_placeholder`` so notes
converge on the one form, but they are not secrets and ``redact`` leaves them alone.
"""

from __future__ import annotations

import logging
import math
import re
import urllib.parse
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

ALLOWED_PLACEHOLDER = "<API_KEY_PLACEHOLDER>"
PLACEHOLDER = "<redacted>"

_NOT_ALLOWED = f"(?!{re.escape(ALLOWED_PLACEHOLDER)})"
_TOKEN = r"[A-Za-z0-9._~+/=\-]"
# Public identifiers that providers and spendtrail print freely (request, message, completion,
# batch, file, run and gateway-key ids): long and random-looking, but not credentials.
_ID_PREFIX = re.compile(
    r"(?i)^(?:req|request|chatcmpl|cmpl|msg|resp|run|job|evt|batch|file|gen|toolu|call|gk)[-_]"
)
_HEX_ID = re.compile(r"^[0-9a-fA-F\-]+$")  # UUIDs, commit ids, SHA-256 digests
_ENV_REFERENCE = re.compile(r"^(?:\$\{?[A-Za-z_]|%[A-Za-z_]+%$|os\.environ|env\.)")
_NOT_A_VALUE = frozenset({"null", "none", "true", "false", "redacted", "required", "optional"})


def _looks_random(value: str) -> bool:
    """Mixed in the way keys are and words are not: a digit, or an upper-case letter after a
    lower-case one, or simply long."""
    return (
        any(c.isdigit() for c in value)
        or re.search(r"[a-z][A-Z]", value) is not None
        or len(value) >= 24
    )


def _entropy(value: str) -> float:
    counts = Counter(value)
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())


def _high_entropy(value: str) -> bool:
    if _ID_PREFIX.match(value) or _HEX_ID.match(value):
        return False
    classes = sum(
        any(test(c) for c in value) for test in (str.isupper, str.islower, str.isdigit)
    )
    # Names built from words (CamelCase, snake_case) are mostly lower-case runs; random keys
    # rarely have runs of three or more lower-case letters.
    in_words = sum(len(run) for run in re.findall(r"[a-z]{3,}", value)) / len(value)
    return classes == 3 and in_words < 0.5 and _entropy(value) >= 3.8


def _assigned_secret(value: str) -> bool:
    return (
        value.lower().strip("*") not in _NOT_A_VALUE
        and not _ENV_REFERENCE.match(value)
        and set(value) != {"*"}
    )


@dataclass(frozen=True, slots=True)
class _Detector:
    kind: str
    description: str
    pattern: re.Pattern[str]
    accept: Callable[[str], bool] | None = None  # extra test on the secret group
    secret: bool = True  # False: credential-shaped placeholder, reported but not masked


# Names match from their secret-bearing word (any prefix may precede it) and free parts are
# bounded, so a long run of word characters cannot make matching quadratic. Order matters only
# for ties: at the same span the earlier, more specific kind wins.
_DETECTORS: tuple[_Detector, ...] = (
    _Detector(
        "private_key",
        "a private key block",
        re.compile(
            r"(?P<s>-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----"
            r"(?:[\s\S]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|[\s\S]*\Z))"
        ),
    ),
    _Detector(
        "credential_placeholder",
        f"a credential placeholder other than {ALLOWED_PLACEHOLDER}",
        re.compile(
            r"(?P<s>" + _NOT_ALLOWED
            + r"<[A-Za-z0-9_\- ]{0,40}(?i:key|token|secret|password|credential)"
            r"[A-Za-z0-9_\- ]{0,40}>"
            r"|\b(?:sk|rk|pk)-(?:[A-Za-z]+-)?(?:[xX]{3,}|\*{3,}|\.{3}|…)(?![A-Za-z0-9]))"
        ),
        secret=False,
    ),
    _Detector(
        "anthropic_key", "an Anthropic API key (sk-ant-...)",
        re.compile(r"(?P<s>\bsk-ant-[A-Za-z0-9_\-]{8,})"),
    ),
    _Detector(
        "gateway_key", "a spendtrail gateway key (sk-st-...)",
        re.compile(r"(?P<s>\bsk-st-[A-Za-z0-9_\-]{8,})"),
    ),
    _Detector(
        "openai_project_key", "an OpenAI project key (sk-proj-...)",
        re.compile(r"(?P<s>\bsk-proj-[A-Za-z0-9_\-]{8,})"),
    ),
    _Detector(
        "api_key", "an OpenAI/CometAPI-style API key (sk-...)",
        re.compile(r"(?P<s>\b(?:sk|rk)-[A-Za-z0-9_\-]{8,}|\b(?:sk|rk)_(?:live|test)_\w{8,})"),
    ),
    _Detector(
        "aws_access_key", "an AWS access key id",
        re.compile(r"(?P<s>\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b)"),
    ),
    _Detector(
        "google_api_key", "a Google API key",
        re.compile(r"(?P<s>\bAIza[0-9A-Za-z_\-]{35})"),
    ),
    _Detector(
        "github_token", "a GitHub token",
        re.compile(r"(?P<s>\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_\w{30,}))"),
    ),
    _Detector(
        "slack_token", "a Slack token",
        re.compile(r"(?P<s>\bxox[abposr]-[A-Za-z0-9\-]{10,})"),
    ),
    _Detector(
        "jwt", "a JSON Web Token",
        re.compile(r"(?P<s>\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*)"),
    ),
    _Detector(
        "bearer_token", "a bearer token",
        re.compile(rf"(?i)\bbearer\s+{_NOT_ALLOWED}(?P<s>{_TOKEN}{{8,}})"),
        accept=_looks_random,
    ),
    _Detector(
        "authorization_header", "an Authorization header value",
        re.compile(
            rf"(?i)\b(?:proxy-)?authorization\s*[:=]\s*[\"']?(?:(?:basic|token|digest)\s+)?"
            rf"{_NOT_ALLOWED}(?P<s>{_TOKEN}{{8,}})"
        ),
        accept=_looks_random,
    ),
    _Detector(
        "secret_assignment", "a value assigned to a key, token, secret or password",
        re.compile(
            r"(?i)(?:api[_\-]?key|apikey|secret(?:[_\-]?key)?|password|passwd|pwd"
            r"|access[_\-]?key(?:[_\-]?id)?|(?:access|auth|refresh|session|bearer)[_\-]?token)"
            rf"[\"']?\s*[:=]\s*[\"']?{_NOT_ALLOWED}(?P<s>[^\s\"'<>,;{{}}()\[\]]{{4,}})"
        ),
        accept=_assigned_secret,
    ),
    _Detector(
        "secret_assignment", "a value assigned to a key, token or secret variable",
        re.compile(
            r"(?<=[A-Z0-9])_(?:TOKEN|KEY|SECRET)[\"']?\s*[:=]\s*[\"']?"
            rf"{_NOT_ALLOWED}(?P<s>[^\s\"'<>,;{{}}()\[\]]{{6,}})"
        ),
        accept=lambda value: _assigned_secret(value) and _looks_random(value),
    ),
    _Detector(
        "high_entropy_token", "a long random-looking token",
        # Not after a token character or dot, so URL paths and dotted names stay whole.
        re.compile(r"(?<![A-Za-z0-9_\-+/.@])(?P<s>[A-Za-z0-9_\-+/]{32,}={0,2})"),
        accept=_high_entropy,
    ),
)

DESCRIPTIONS: dict[str, str] = {d.kind: d.description for d in reversed(_DETECTORS)}


@dataclass(frozen=True, slots=True)
class SecretMatch:
    """Where a credential-shaped value sits in a text; ``secret`` is False for placeholders."""

    kind: str
    start: int
    end: int
    secret: bool


def find_secrets(text: str) -> list[SecretMatch]:
    """Every credential-shaped span in `text`, in order and never overlapping."""
    found: list[tuple[int, int, int, _Detector]] = []
    for order, detector in enumerate(_DETECTORS):
        for match in detector.pattern.finditer(text):
            value = match["s"]
            if detector.accept is None or detector.accept(value):
                found.append((match.start("s"), -len(value), order, detector))
    found.sort(key=lambda item: item[:3])
    kept: list[SecretMatch] = []
    for start, negative_length, _, detector in found:
        if kept and start < kept[-1].end:
            continue  # inside a span already reported: the earliest, longest one wins
        kept.append(SecretMatch(detector.kind, start, start - negative_length, detector.secret))
    return kept


def redact(text: str) -> str:
    """`text` with every credential replaced by ``<redacted>``; names and placeholders stay,
    so ``api_key=sk-...`` becomes ``api_key=<redacted>``."""
    parts: list[str] = []
    position = 0
    for match in find_secrets(text):
        if match.secret:
            parts += [text[position:match.start], PLACEHOLDER]
            position = match.end
    parts.append(text[position:])
    return "".join(parts)


_PLAIN_SEGMENT = re.compile(r"^[a-z][a-z_.\-]{0,19}$")  # a lower-case word, not long


def mask_url(url: str) -> str:
    """A URL safe to show: scheme, host and port kept, a password and every query value
    masked, and each path segment that is not a plain word (a Slack webhook's
    ``T000/B000/XXXX``, a token) replaced by ``<redacted>``."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    if parts.username:
        host = f"{parts.username}:{PLACEHOLDER}@{host}" if parts.password is not None else (
            f"{PLACEHOLDER}@{host}")
    path = "/".join(
        segment if not segment or _PLAIN_SEGMENT.match(segment) else PLACEHOLDER
        for segment in parts.path.split("/")
    )
    query = "&".join(
        f"{name}={PLACEHOLDER}" for name, _ in urllib.parse.parse_qsl(
            parts.query, keep_blank_values=True)
    )
    return urllib.parse.urlunsplit((parts.scheme, host, path, query, ""))


_PLACEHOLDER_BYTES = PLACEHOLDER.encode()


def mask(data: bytes, secret: bytes) -> bytes:
    """`data` with every occurrence of `secret` (a key we hold) replaced by ``<redacted>``.

    A substring test first: on the hot path (every body and stream event relayed) a value
    that cannot hold the key costs one fast scan and no copy."""
    return data.replace(secret, _PLACEHOLDER_BYTES) if secret and secret in data else data


class StreamMask:
    """``mask`` over a body relayed in pieces: the last ``len(secret) - 1`` bytes are held
    back until the next piece, so a key split across two pieces is still found."""

    def __init__(self, secret: bytes) -> None:
        self.secret = secret
        self._keep = max(len(secret) - 1, 0)
        self._held = b""

    def feed(self, data: bytes) -> bytes:
        data = mask(self._held + data if self._held else data, self.secret)
        if self._keep == 0:
            return data
        cut = max(len(data) - self._keep, 0)
        self._held = data[cut:]
        return data[:cut]

    def flush(self) -> bytes:
        rest, self._held = self._held, b""
        return rest


class RedactingFilter(logging.Filter):
    """A logging filter that masks, in the message and its traceback, the exact secrets it is
    given and every credential shape ``redact`` knows (gateway keys, bearer tokens, ...).
    Installed on the loggers of a process that holds keys, so no log line carries one."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def clean(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, PLACEHOLDER)
        return redact(text)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = self.clean(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.clean(record.exc_text)
        if record.stack_info:
            record.stack_info = self.clean(record.stack_info)
        return True
