"""A statement as the bytes of one format, and a closed month's statements as they were at
its close: ``statement_document`` returns the snapshot taken by ``spendtrail close``, byte
for byte, when there is one; otherwise it builds and renders the statement.

Formats people read (md, html, pdf) round to the currency's minor unit; csv and json stay
exact. A closed month's PDF is laid out from its HTML snapshot.
"""

from __future__ import annotations

import sqlalchemy as sa

from spendtrail.errors import SpendtrailError
from spendtrail.ledger.allocation_entries import load_snapshot
from spendtrail.periods import Period
from spendtrail.reports.chargeback import Scope, Statement, build_statement, to_csv, to_json
from spendtrail.reports.render_html import to_html
from spendtrail.reports.statement_view import to_markdown

MEDIA_TYPES = {
    "md": "text/markdown; charset=utf-8",
    "html": "text/html; charset=utf-8",
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "pdf": "application/pdf",
}
FORMATS = tuple(MEDIA_TYPES)
SNAPSHOT_FORMATS = ("md", "html", "csv", "json")
OWNER_SCOPES = ("application", "budget_owner", "cost_center", "business_unit")


def statement_scopes(company: Statement) -> list[Scope]:
    """The company, then every owner with a line in the company's statement: the statements
    a month has (snapshotted at its close, written by a statements run)."""
    found = {
        Scope(attribute, value)
        for owner in company.owners
        for attribute in OWNER_SCOPES
        if (value := getattr(owner, attribute))
    }
    return [Scope(), *sorted(found, key=lambda s: (s.attribute, s.value))]


def render_statement(statement: Statement, fmt: str, decimals: int | None = None) -> bytes:
    if fmt == "pdf":
        from spendtrail.reports.render_pdf import to_pdf  # WeasyPrint: heavy, optional

        return to_pdf(statement, decimals)
    renderers = {
        "md": lambda s: to_markdown(s, decimals),
        "html": lambda s: to_html(s, decimals),
        "csv": to_csv,
        "json": to_json,
    }
    if fmt not in renderers:
        raise SpendtrailError(f"statement format {fmt!r}: expected one of {', '.join(FORMATS)}")
    return renderers[fmt](statement).encode()


def statement_document(
    conn: sa.Connection,
    period: Period,
    scope: Scope,
    fmt: str,
    *,
    decimals: int | None = None,
) -> tuple[bytes, Statement | None]:
    """The statement's bytes, and the statement when it was built (None: a snapshot)."""
    if decimals is None:
        snapshot = load_snapshot(conn, period.label, str(scope), "html" if fmt == "pdf" else fmt)
        if snapshot is not None:
            if fmt != "pdf":
                return snapshot[0], None
            from spendtrail.reports.render_pdf import html_to_pdf

            return html_to_pdf(snapshot[0].decode()), None
    statement = build_statement(conn, period, owner=scope)
    if not scope.is_company and not statement.owners:
        raise SpendtrailError(f"no spend or allocation for {scope} in {period.label}")
    return render_statement(statement, fmt, decimals), statement
