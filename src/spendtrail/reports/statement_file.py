"""A statement as the bytes of one format, and a closed month's statements as they were at
its close: ``statement_document`` returns the snapshot taken by ``spendtrail close``, byte
for byte, when there is one; otherwise it builds and renders the statement.

Formats people read (md, html, pdf) round to the currency's minor unit; csv and json stay
exact. A closed month's PDF is laid out from its HTML snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa

from spendtrail.errors import SpendtrailError
from spendtrail.ledger.allocation_entries import load_snapshot
from spendtrail.periods import Period
from spendtrail.reports.chargeback import (
    OwnerStatement,
    Scope,
    Statement,
    build_statement,
    to_csv,
    to_json,
)
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


def scopes_of(owners: Iterable[OwnerStatement]) -> list[Scope]:
    """The company, then every owner with a line in the company's statement (``owners``):
    the statements a month has (snapshotted at its close, written by a statements run)."""
    found = {
        Scope(attribute, value)
        for owner in owners
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
    if decimals is None and (snapshot := _snapshot(conn, period, scope, fmt)) is not None:
        return snapshot, None
    statement = _build(conn, period, scope)
    return render_statement(statement, fmt, decimals), statement


def statement_documents(
    conn: sa.Connection, period: Period, scope: Scope, formats: tuple[str, ...]
) -> dict[str, bytes]:
    """The statement in each of ``formats``: a closed month's snapshots; what has none is
    rendered from one statement, built once."""
    documents: dict[str, bytes] = {}
    built: Statement | None = None
    for fmt in formats:
        if (snapshot := _snapshot(conn, period, scope, fmt)) is not None:
            documents[fmt] = snapshot
            continue
        built = built or _build(conn, period, scope)
        documents[fmt] = render_statement(built, fmt)
    return documents


def _snapshot(conn: sa.Connection, period: Period, scope: Scope, fmt: str) -> bytes | None:
    """The format as it was snapshotted at the close; a PDF is laid out from the HTML's."""
    found = load_snapshot(conn, period.label, str(scope), "html" if fmt == "pdf" else fmt)
    if found is None or fmt != "pdf":
        return None if found is None else found[0]
    from spendtrail.reports.render_pdf import html_to_pdf

    return html_to_pdf(found[0].decode())


def _build(conn: sa.Connection, period: Period, scope: Scope) -> Statement:
    statement = build_statement(conn, period, owner=scope)
    if not scope.is_company and not statement.owners:
        raise SpendtrailError(f"no spend or allocation for {scope} in {period.label}")
    return statement
