"""How the console server behaves: where uploads and statement runs go, cookies, sessions,
login limits, and the trusted-header SSO mode (off unless a header is named)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from spendtrail.settings import Settings


def _flag(name: str) -> bool:
    return (os.environ.get(f"SPENDTRAIL_{name}") or "").lower() in ("1", "true", "yes")


@dataclass(frozen=True)
class ApiSettings:
    home: Path
    # Secure cookies always; otherwise only on requests that arrived over https.
    secure_cookies: bool = field(default_factory=lambda: _flag("SECURE_COOKIES"))
    # Behind an SSO proxy that sets this header to the user's name (and strips it from
    # clients): requests carrying it are that user. Off when None.
    trusted_user_header: str | None = field(
        default_factory=lambda: os.environ.get("SPENDTRAIL_TRUSTED_USER_HEADER") or None
    )
    session_hours: int = 12
    login_failures: int = 5  # per user name and per client address...
    login_window_seconds: float = 300.0  # ...in this many seconds, then 429

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: object) -> ApiSettings:
        return cls(home=settings.home, **overrides)  # type: ignore[arg-type]
