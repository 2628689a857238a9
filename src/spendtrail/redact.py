"""Masking of credential-shaped text before anything is stored or printed."""

from __future__ import annotations

import re

_SECRET = re.compile(
    r"(?i)\b(?:sk|pk|rk|st)-[A-Za-z0-9_\-]{8,}"  # OpenAI/Anthropic/CometAPI/spendtrail style keys
    r"|bearer\s+[A-Za-z0-9._\-+/=]{8,}"
    r"|\b(?:api[_-]?key|token|secret|password)\b[\"']?\s*[:=]\s*[\"']?[^\s\"',}]{6,}"
)

PLACEHOLDER = "<redacted>"


def redact(text: str) -> str:
    return _SECRET.sub(PLACEHOLDER, text)
