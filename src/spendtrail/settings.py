"""Configuration from SPENDTRAIL_* environment variables."""

from __future__ import annotations

import getpass
import os
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_home() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "spendtrail"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SPENDTRAIL_")

    home: Path = _default_home()
    database_url: str | None = None
    spool_dir: Path | None = None
    actor: str | None = None

    @property
    def ledger_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'ledger.db'}"

    @property
    def spool(self) -> Path:
        return self.spool_dir or self.home / "spool"

    @property
    def who(self) -> str:
        return self.actor or getpass.getuser()
