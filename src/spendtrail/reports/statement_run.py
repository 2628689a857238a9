"""The month's statements written as files: the company's, and one per application, budget
owner, cost center and business unit with spend in the period, each in Markdown, CSV and
JSON, under one folder per period; the run is audited."""

from __future__ import annotations

import re
from pathlib import Path

import sqlalchemy as sa

from spendtrail.ledger.audit import record_change
from spendtrail.periods import Period
from spendtrail.reports.chargeback import Scope, build_statement
from spendtrail.reports.statement_formats import render_statement

RUN_FORMATS = ("md", "csv", "json")


def statement_scopes(conn: sa.Connection, period: Period) -> list[Scope]:
    """The company, then every owner with a line in the period's company statement."""
    company = build_statement(conn, period)
    found: set[Scope] = set()
    for owner in company.owners:
        for attribute in ("application", "budget_owner", "cost_center", "business_unit"):
            value = getattr(owner, attribute)
            if value:
                found.add(Scope(attribute, value))
    return [Scope(), *sorted(found, key=lambda s: (s.attribute, s.value))]


def write_statements(
    conn: sa.Connection, period: Period, directory: Path, *, actor: str
) -> list[Path]:
    folder = directory / period.label.replace("..", "_")
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for scope in statement_scopes(conn, period):
        statement = build_statement(conn, period, owner=scope)
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", str(scope))
        for fmt in RUN_FORMATS:
            path = folder / f"{stem}.{fmt}"
            rendered = render_statement(statement, fmt)
            path.write_text(rendered if isinstance(rendered, str) else rendered.decode())
            written.append(path)
    record_change(
        conn,
        actor=actor,
        action="statements.run",
        object_type="statements",
        object_id=period.label,
        after={"directory": str(folder), "files": [p.name for p in written]},
    )
    return written
