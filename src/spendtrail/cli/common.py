"""What every CLI command shares: settings, the ledger, consoles, one-line failures."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from spendtrail.settings import Settings

if TYPE_CHECKING:
    import sqlalchemy as sa

PeriodOption = Annotated[str, typer.Option(help="YYYY-MM, YYYY-MM-DD or FIRST..LAST (UTC days).")]

# soft_wrap: a message line (often holding a path) is never broken at the terminal width.
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


@cache
def settings() -> Settings:
    return Settings()


@cache
def ledger() -> sa.Engine:
    from spendtrail.ledger.db import open_ledger  # SQLAlchemy: only for commands that use it

    return open_ledger(settings().ledger_url)


def actor() -> str:
    return settings().who


def fail(message: str, code: int = 2) -> NoReturn:
    err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def when(text: str) -> datetime:
    """An --at option: a UTC day (00:00) or an ISO 8601 time (UTC when it has no offset)."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        fail(f"--at {text!r}: expected YYYY-MM-DD or an ISO 8601 time")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
