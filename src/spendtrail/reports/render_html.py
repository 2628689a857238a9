"""A chargeback statement as one self-contained HTML page: the statement's tables plus inline
SVG bar charts (spend by owner, spend by day). No JavaScript and no network assets, so the
page can be attached to a review as it is."""

from __future__ import annotations

from html import escape

from spendtrail.reports.chargeback import NOT_ASSERTED, Statement, amount, header, sections

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1rem}
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;font-size:.85rem}
th{background:#f3f3f3}.note{color:#555;font-size:.85rem}
svg text{font-size:11px;font-family:system-ui,sans-serif}
"""
_BAR_HEIGHT, _LABEL_WIDTH, _BAR_WIDTH = 18, 170, 360


def bar_chart(title: str, bars: list[tuple[str, int]], currency: str) -> str:
    """Horizontal bars, one per label, scaled to the largest pico amount."""
    largest = max((value for _, value in bars), default=0) or 1
    height = _BAR_HEIGHT * len(bars) + 24
    width = _LABEL_WIDTH + _BAR_WIDTH + 140
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" '
             f'height="{height}" aria-label="{escape(title)}"><title>{escape(title)}</title>']
    for i, (label, value) in enumerate(bars):
        y = 20 + i * _BAR_HEIGHT
        length = max(value, 0) * _BAR_WIDTH // largest
        parts.append(
            f'<text x="0" y="{y + 12}">{escape(label)}</text>'
            f'<rect class="bar" x="{_LABEL_WIDTH}" y="{y}" width="{length}" '
            f'height="{_BAR_HEIGHT - 4}" fill="#4a78c2"/>'
            f'<text x="{_LABEL_WIDTH + length + 4}" y="{y + 12}">'
            f'{amount(value)} {escape(currency)}</text>')
    parts.append(f'<text x="0" y="12" font-weight="bold">{escape(title)}</text></svg>')
    return "".join(parts)


def charts(statement: Statement) -> list[str]:
    """Per currency: spend by owner (direct + reallocated + shared) and ledger spend by day."""
    currencies = sorted({c for c in statement.ledger_total if c})
    result = []
    for currency in currencies:
        by_owner = [(o.owner, o.total().get(currency, 0)) for o in statement.owners]
        by_day = [(day, money.get(currency, 0)) for day, money in statement.by_day]
        result.append(bar_chart(f"Spend by owner ({currency})", by_owner, currency))
        result.append(bar_chart(f"Spend by day ({currency}, whole ledger)", by_day, currency))
    return result


def to_html(statement: Statement) -> str:
    title = f"Chargeback statement: {statement.period.label}"
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>",
           f"<h1>{escape(title)}</h1><dl>"]
    out += [f"<dt>{escape(k.replace('_', ' '))}</dt><dd>{escape(v)}</dd>"
            for k, v in header(statement).items()]
    out.append('</dl><h2>Charts</h2><div class="charts">')
    out += charts(statement)
    out.append("</div>")
    for section in sections(statement):
        out.append(f'<h2 id="{section.key}">{escape(section.title)}</h2>')
        if section.rows:
            names = list(section.rows[0])
            out.append("<table><thead><tr>" + "".join(
                f"<th>{escape(n.replace('_', ' '))}</th>" for n in names) + "</tr></thead><tbody>")
            out += ["<tr>" + "".join(f"<td>{escape(row[n])}</td>" for n in names) + "</tr>"
                    for row in section.rows]
            out.append("</tbody></table>")
        else:
            out.append("<p><em>none</em></p>")
        if section.note:
            out.append(f'<p class="note">{escape(section.note)}</p>')
    out.append('<h2 id="not_asserted">What this statement does not assert</h2><ul>')
    out += [f"<li>{escape(text)}</li>" for text in NOT_ASSERTED]
    out.append("</ul></body></html>")
    return "\n".join(out) + "\n"
