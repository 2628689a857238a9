"""Chargeback statements: which ones a user may read, each rendered, and the month's run.
A scoped user gets statements of its own owners only, never the company's."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from spendtrail.access.principal import Principal
from spendtrail.access.roles import AccessDenied, Permission
from spendtrail.console.errors import NotFound
from spendtrail.console.types import StatementRef, StatementsRun
from spendtrail.periods import parse_period
from spendtrail.reports.chargeback import Scope, build_statement, parse_scope
from spendtrail.reports.statement_formats import MEDIA_TYPES, render_statement
from spendtrail.reports.statement_run import statement_scopes, write_statements


def available(engine: sa.Engine, who: Principal, period: str) -> list[StatementRef]:
    who.require(Permission.read)
    chosen = parse_period(period)
    with engine.connect() as conn:
        scopes = statement_scopes(conn, chosen)
    return [StatementRef(owner=str(s), label=_label(s)) for s in scopes if _admits(who, s)]


def statement(
    engine: sa.Engine,
    who: Principal,
    period: str,
    owner: str | None,
    fmt: str = "json",
    decimals: int | None = None,
) -> tuple[str | bytes, str]:
    """The rendered statement and its media type."""
    who.require(Permission.read)
    scope = parse_scope(owner)
    if not _admits(who, scope):
        raise AccessDenied(f"{who.name} may read statements of its own owners only")
    if fmt not in MEDIA_TYPES:
        raise NotFound(f"statement format {fmt!r}: expected one of {', '.join(MEDIA_TYPES)}")
    chosen = parse_period(period)
    with engine.connect() as conn:
        built = build_statement(conn, chosen, owner=scope)
    if not scope.is_company and not built.owners:
        raise NotFound(f"no spend or allocation for {scope} in {chosen.label}")
    return render_statement(built, fmt, decimals), MEDIA_TYPES[fmt]


def run_month(engine: sa.Engine, who: Principal, period: str, directory: Path) -> StatementsRun:
    who.require_everyone(Permission.run_statements)
    chosen = parse_period(period)
    with engine.begin() as conn:
        files = write_statements(conn, chosen, directory, actor=who.actor)
    return StatementsRun(
        period=chosen.label,
        directory=str(files[0].parent) if files else str(directory),
        files=[p.name for p in files],
    )


def _admits(who: Principal, scope: Scope) -> bool:
    return (
        who.scope.everyone
        if scope.is_company
        else who.scope.admits_owner(scope.attribute, scope.value)
    )


def _label(scope: Scope) -> str:
    if scope.is_company:
        return "the company"
    return f"{scope.attribute.replace('_', ' ')} {scope.value}"
