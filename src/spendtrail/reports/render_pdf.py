"""A chargeback statement as PDF: the HTML page (``render_html``) laid out by WeasyPrint with
its print CSS. WeasyPrint is the ``pdf`` extra (``pip install 'spendtrail[pdf]'``) and needs
Pango from the system (``make`` installs it; see docs/reports.md)."""

from __future__ import annotations

from spendtrail.errors import SpendtrailError
from spendtrail.reports.chargeback import Statement
from spendtrail.reports.render_html import to_html


def to_pdf(statement: Statement, decimals: int | None = None) -> bytes:
    return html_to_pdf(to_html(statement, decimals))


def html_to_pdf(html: str) -> bytes:
    try:
        from weasyprint import HTML
    except (ImportError, OSError) as exc:  # OSError: the package is there, Pango is not
        raise SpendtrailError(
            f"PDF statements need WeasyPrint and its system libraries ({exc}); install them "
            "with: pip install 'spendtrail[pdf]' and apt-get install libpango-1.0-0 "
            "libpangoft2-1.0-0 (docs/reports.md)"
        ) from None
    return HTML(string=html).write_pdf()
