"""Configuration from SPENDTRAIL_* environment variables (read with the standard library: the
CLI starts without loading a settings framework)."""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass, field
from pathlib import Path


def _env(name: str) -> str | None:
    """SPENDTRAIL_<NAME>; an empty value counts as unset."""
    return os.environ.get(f"SPENDTRAIL_{name}") or None


def _default_home() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "spendtrail"


def _path(name: str) -> Path | None:
    value = _env(name)
    return None if value is None else Path(value)


@dataclass(frozen=True)
class Settings:
    home: Path = field(default_factory=lambda: _path("HOME") or _default_home())
    database_url: str | None = field(default_factory=lambda: _env("DATABASE_URL"))
    spool_dir: Path | None = field(default_factory=lambda: _path("SPOOL_DIR"))
    actor: str | None = field(default_factory=lambda: _env("ACTOR"))
    # nats://host:port/STREAM: capture journals to NATS JetStream instead of the spool.
    journal_url: str | None = field(default_factory=lambda: _env("JOURNAL_URL"))
    # The alerts file (docs/alerts.md); default: alerts.yaml in the home, when it exists.
    alerts_file: Path | None = field(default_factory=lambda: _path("ALERTS_FILE"))

    @property
    def ledger_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'ledger.db'}"

    @property
    def spool(self) -> Path:
        return self.spool_dir or self.home / "spool"

    @property
    def alerts(self) -> Path | None:
        default = self.home / "alerts.yaml"
        return self.alerts_file or (default if default.is_file() else None)

    @property
    def who(self) -> str:
        return self.actor or getpass.getuser()
