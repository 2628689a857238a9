"""A chargeback statement as one self-contained HTML page: the statement's tables as people
read them (``statement_view``) plus inline SVG bar charts, with print CSS (A4 landscape,
page numbers, the PRELIMINARY mark on every page). No JavaScript and no network assets, so
the page can be attached to a review as it is, printed, or turned into a PDF."""

from __future__ import annotations

from html import escape

from spendtrail.reports.chargeback import Statement
from spendtrail.reports.statement_view import Chart, Table, View, build_view

_STYLE = """
:root{--ink:#1d2430;--muted:#5b6574;--line:#d5dae1;--head:#eef1f5;--accent:#2f5d9e}
*{box-sizing:border-box}
body{font-family:"DejaVu Sans",system-ui,sans-serif;color:var(--ink);margin:0;
  background:#fff;font-size:13px;line-height:1.4}
main{max-width:1240px;margin:0 auto;padding:28px 32px 48px}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:15px;margin:26px 0 6px;padding-bottom:3px;border-bottom:2px solid var(--accent)}
.status{display:inline-block;font-weight:700;letter-spacing:.08em;padding:3px 10px;
  border-radius:3px;font-size:12px;margin:4px 0 12px}
.status.preliminary{background:#fff1e0;color:#9a4a00;border:1px solid #e8a060}
.status.final{background:#e6f4ea;color:#1e6b34;border:1px solid #7cc08f}
dl.head{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:0 0 14px}
dl.head dt{color:var(--muted)}dl.head dd{margin:0}
.summary{display:flex;flex-wrap:wrap;gap:10px;margin:6px 0 8px}
.summary div{border:1px solid var(--line);border-radius:4px;padding:8px 14px;min-width:170px}
.summary span{display:block;color:var(--muted);font-size:11px}
.summary strong{font-size:18px;font-variant-numeric:tabular-nums}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:10px 28px;
  align-items:start}
svg.chart{max-width:100%;height:auto}
table{border-collapse:collapse;margin:4px 0 6px;min-width:55%}
th,td{border-bottom:1px solid var(--line);padding:4px 8px;text-align:left;vertical-align:top}
th{vertical-align:bottom}
td.wrap{white-space:normal;overflow-wrap:anywhere}
.row{display:flex;flex-wrap:wrap;gap:0 36px;align-items:flex-start}
.row table{min-width:0}
th{background:var(--head);font-weight:600;font-size:12px;border-bottom:1px solid #b9c0ca}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
td.num{white-space:nowrap}
tbody tr:nth-child(even) td{background:#fafbfc}
tfoot td{font-weight:700;border-top:2px solid var(--ink);border-bottom:3px double var(--ink)}
.note{color:var(--muted);font-size:12px;margin:2px 0 0}
.none{color:var(--muted);font-style:italic;margin:2px 0}
ul.not-asserted{color:var(--muted);padding-left:18px}
@page{size:A4 landscape;margin:14mm 12mm 15mm;
  @top-left{content:string(title);font:9px "DejaVu Sans",sans-serif;color:#5b6574}
  @top-right{content:string(status);font:bold 9px "DejaVu Sans",sans-serif;color:#9a4a00}
  @bottom-right{content:"Page " counter(page) " of " counter(pages);
    font:9px "DejaVu Sans",sans-serif;color:#5b6574}}
@media print{
  body{font-size:10px}main{max-width:none;padding:0}
  h1{string-set:title content()}
  .status.preliminary{string-set:status content()}
  h2{break-after:avoid;margin-top:16px}
  table,.chart{break-inside:auto}tr{break-inside:avoid}
  thead{display:table-header-group}tfoot{display:table-row-group}
  th,td{padding:2px 5px;font-size:10px}.note{font-size:9px}
  tbody tr:nth-child(even) td{background:none}
  .charts{grid-template-columns:1fr 1fr}
  .row{display:block}  /* side by side, a table could not break across pages */
  .summary strong{font-size:14px}
}
"""
_BAR_HEIGHT, _LABEL_WIDTH, _BAR_WIDTH, _TEXT_WIDTH = 16, 190, 250, 90
# Presentation attributes, not CSS: a PDF renderer draws inline SVG without the page's styles.
_BAR_FILL = "#2f5d9e"
_TEXT = ' font-size="11" font-family="DejaVu Sans, sans-serif" fill="#1d2430"'


def bar_chart(chart: Chart) -> str:
    """Horizontal bars, one per label, scaled to the largest amount."""
    largest = max((bar.pico for bar in chart.bars), default=0) or 1
    height = _BAR_HEIGHT * len(chart.bars) + 26
    width = _LABEL_WIDTH + _BAR_WIDTH + _TEXT_WIDTH
    parts = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" role="img" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'aria-label="{escape(chart.title)}"><title>{escape(chart.title)}</title>'
    ]
    for i, bar in enumerate(chart.bars):
        y = 22 + i * _BAR_HEIGHT
        length = max(bar.pico, 0) * _BAR_WIDTH // largest
        label = bar.label if len(bar.label) <= 28 else bar.label[:27] + "…"
        parts.append(
            f'<text x="0" y="{y + 11}"{_TEXT}>{escape(label)}</text>'
            f'<rect class="bar" x="{_LABEL_WIDTH}" y="{y}" width="{length}" '
            f'height="{_BAR_HEIGHT - 4}" fill="{_BAR_FILL}"/>'
            f'<text x="{_LABEL_WIDTH + length + 4}" y="{y + 11}"{_TEXT}>'
            f"{escape(bar.text)}</text>"
        )
    parts.append(f'<text x="0" y="12" font-weight="bold"{_TEXT}>{escape(chart.title)}</text></svg>')
    return "".join(parts)


def _table(table: Table) -> list[str]:
    out = [f'<section><h2 id="{table.key}">{escape(table.title)}</h2>']
    if not table.rows:
        out.append('<p class="none">none</p>')
    else:
        kinds = [
            " class=num" if c.numeric else " class=wrap" if c.wrap else "" for c in table.columns
        ]

        def cells(values: list[str], tag: str = "td") -> str:
            return "".join(
                f"<{tag}{kind}>{escape(value)}</{tag}>"
                for value, kind in zip(values, kinds, strict=True)
            )

        out.append(
            "<table><thead><tr>"
            + cells([c.title for c in table.columns], "th")
            + "</tr></thead><tbody>"
        )
        out += [f"<tr>{cells(row)}</tr>" for row in table.rows]
        out.append("</tbody>")
        if table.totals is not None:
            out.append(f"<tfoot><tr>{cells(table.totals)}</tr></tfoot>")
        out.append("</table>")
    if table.note:
        out.append(f'<p class="note">{escape(table.note)}</p>')
    out.append("</section>")
    return out


def view_html(view: View) -> str:
    status = (
        '<p class="status preliminary">PRELIMINARY: the period is not closed</p>'
        if view.preliminary
        else '<p class="status final">Final: the period is closed</p>'
    )
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(view.title)}</title><style>{_STYLE}</style></head><body><main>",
        f"<h1>{escape(view.title)}</h1>",
        status,
        '<dl class="head">',
    ]
    out += [f"<dt>{escape(label)}</dt><dd>{escape(value)}</dd>" for label, value in view.header]
    out.append('</dl><div class="summary">')
    out += [
        f"<div><span>{escape(label)}</span><strong>{escape(value)}</strong></div>"
        for label, value in view.summary
    ]
    out.append("</div>")
    if view.charts:
        out.append('<div class="charts">')
        out += [bar_chart(chart) for chart in view.charts]
        out.append("</div>")
    for i, table in enumerate(view.tables):
        before = view.tables[i - 1].group if i else ""
        after = view.tables[i + 1].group if i + 1 < len(view.tables) else ""
        if table.group and table.group != before:
            out.append('<div class="row">')
        out += _table(table)
        if table.group and table.group != after:
            out.append("</div>")
    out.append(
        '<h2 id="not_asserted">What this statement does not assert</h2><ul class="not-asserted">'
    )
    out += [f"<li>{escape(text)}</li>" for text in view.not_asserted]
    out.append("</ul></main></body></html>")
    return "\n".join(out) + "\n"


def to_html(statement: Statement, decimals: int | None = None) -> str:
    return view_html(build_view(statement, decimals))
