"""The month's statements written as files: the company's, and one per application, budget
owner, cost center and business unit with spend in the period, each in Markdown, CSV and
JSON, under one folder per period; the run is audited."""

from __future__ import annotations

import re
from pathlib import Path

import sqlalchemy as sa

from spendtrail.ledger.audit import record_change
from spendtrail.periods import Period
from spendtrail.reports.chargeback import Scope, statement_owners
from spendtrail.reports.statement_file import scopes_of, statement_documents

RUN_FORMATS = ("md", "csv", "json")


def statement_scopes(conn: sa.Connection, period: Period) -> list[Scope]:
    """The company, then every owner with a line in the period's company statement, found
    without building it (``statement_owners``)."""
    return scopes_of(statement_owners(conn, period))


def write_statements(
    conn: sa.Connection, period: Period, directory: Path, *, actor: str
) -> list[Path]:
    folder = directory / period.label.replace("..", "_")
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for scope in statement_scopes(conn, period):
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", str(scope))
        # A closed month's are its snapshots, byte for byte.
        for fmt, content in statement_documents(conn, period, scope, RUN_FORMATS).items():
            path = folder / f"{stem}.{fmt}"
            path.write_bytes(content)
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
