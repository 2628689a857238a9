"""A statement in each format it is handed out in: what people read (Markdown, HTML, PDF)
rounds to the currency's minor unit; what machines read (CSV, JSON) stays exact."""

from __future__ import annotations

from spendtrail.errors import SpendtrailError
from spendtrail.reports.chargeback import Statement, to_csv, to_json

MEDIA_TYPES = {
    "md": "text/markdown; charset=utf-8",
    "html": "text/html; charset=utf-8",
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "pdf": "application/pdf",
}


def render_statement(statement: Statement, fmt: str, decimals: int | None = None) -> str | bytes:
    if fmt == "csv":
        return to_csv(statement)
    if fmt == "json":
        return to_json(statement)
    if fmt == "pdf":
        from spendtrail.reports.render_pdf import to_pdf  # WeasyPrint: heavy, optional

        return to_pdf(statement, decimals)
    if fmt == "md":
        from spendtrail.reports.statement_view import to_markdown

        return to_markdown(statement, decimals)
    if fmt == "html":
        from spendtrail.reports.render_html import to_html

        return to_html(statement, decimals)
    raise SpendtrailError(f"statement format {fmt!r}: expected one of {', '.join(MEDIA_TYPES)}")
