"""Charts as inline SVG, drawn on the server: no script, no CDN. Each chart is an ``img``
with a title and a description for screen readers, and the page puts the same figures in a
table beside it (``<details>``), so nothing is only in a picture.

Values come in as exact ``Decimal``; drawing needs only their proportions, so they are
turned into pixel positions here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from html import escape
from itertools import count

# A palette readable by most colour-blind readers (Okabe-Ito), one colour per series.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#999999")
MAX_SERIES = len(PALETTE)  # beyond this, the smallest series are drawn together as "other"
OTHER = "other"
WIDTH, HEIGHT = 480, 220
LEFT, RIGHT, TOP, BOTTOM = 52, 8, 10, 26
_ids = count(1)


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    values: tuple[Decimal, ...]  # one per category (day)
    colour: str


def stack_series(categories: list[str], values: dict[str, dict[str, Decimal]]) -> list[Series]:
    """``values[series][category]`` as drawable series, largest first, the tail beyond
    ``MAX_SERIES`` summed into one ``other`` series so every bar keeps its full height."""
    totals = {name: sum(v.values(), Decimal(0)) for name, v in values.items()}
    names = sorted(values, key=lambda n: (-totals[n], n))
    kept, rest = names[: MAX_SERIES - 1], names[MAX_SERIES - 1 :]
    if len(rest) == 1:
        kept, rest = names, []
    rows = [(n, [values[n].get(c, Decimal(0)) for c in categories]) for n in kept]
    if rest:
        rows.append(
            (
                OTHER,
                [sum((values[n].get(c, Decimal(0)) for n in rest), Decimal(0)) for c in categories],
            )
        )
    return [Series(name, tuple(vals), PALETTE[i]) for i, (name, vals) in enumerate(rows)]


def stacked_bars(
    title: str, desc: str, categories: list[str], series: list[Series], unit: str
) -> str:
    """One bar per category (day), its series stacked; a legend names each colour."""
    heights = [sum((s.values[i] for s in series), Decimal(0)) for i in range(len(categories))]
    top = _nice_max(max(heights, default=Decimal(0)))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(len(categories), 1)
    bar_w = max(slot * 0.7, 1)
    parts = _axes(top, plot_w, plot_h)
    for i, category in enumerate(categories):
        x = LEFT + i * slot + (slot - bar_w) / 2
        base = TOP + plot_h
        for s in series:
            value = s.values[i]
            if value <= 0:
                continue
            h = float(value / top) * plot_h
            base -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{base:.1f}" width="{bar_w:.1f}" '
                f'height="{h:.1f}" fill="{s.colour}"><title>{escape(category)} '
                f"{escape(s.name)}: {value} {escape(unit)}</title></rect>"
            )
    parts += _category_labels(categories, slot)
    return _svg(title, desc, parts, _legend([(s.name, s.colour) for s in series]))


def burn_down(
    title: str, desc: str, days: list[str], spent: list[Decimal], limit: Decimal, unit: str
) -> str:
    """Cumulative spend at the end of each day so far (``spent``, the first days of
    ``days``, which are all the period's) against the limit (dashed) and the even pace that
    reaches it on the period's last day (dotted)."""
    top = _nice_max(max([*spent, limit], default=Decimal(0)))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / max(len(days), 1)
    parts = _axes(top, plot_w, plot_h)

    def y(value: Decimal) -> float:
        return TOP + plot_h - float(value / top) * plot_h

    parts.append(
        f'<line x1="{LEFT}" y1="{y(limit):.1f}" x2="{LEFT + plot_w}" '
        f'y2="{y(limit):.1f}" stroke="#D55E00" stroke-width="2" '
        f'stroke-dasharray="6 4"><title>limit {limit} {escape(unit)}</title></line>'
    )
    parts.append(
        f'<line x1="{LEFT}" y1="{y(Decimal(0)):.1f}" x2="{LEFT + plot_w}" '
        f'y2="{y(limit):.1f}" stroke="#999999" stroke-dasharray="2 4"/>'
    )
    points = [(LEFT + (i + 1) * step, y(v)) for i, v in enumerate(spent)]
    if points:
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py in [(LEFT, y(Decimal(0))), *points])
        parts.append(f'<polyline points="{path}" fill="none" stroke="#0072B2" stroke-width="2.5"/>')
        for (px, py), day, value in zip(points, days, spent, strict=False):
            parts.append(
                f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="#0072B2">'
                f"<title>{escape(day)}: {value} {escape(unit)}</title></circle>"
            )
    # The first day, the last one drawn and the period's last: enough to read the pace.
    last = len(days) - 1
    ticks = sorted({0, last, max(len(spent) - 1, 0)})
    ticks = [i for i in ticks if i in (0, last) or last - i > len(days) / 6]
    parts += [
        f'<text x="{LEFT + (i + 1) * step:.1f}" y="{HEIGHT - BOTTOM + 16}" '
        f'text-anchor="{"end" if i == last else "middle"}" class="tick">'
        f"{escape(_day_label(days[i]))}</text>"
        for i in ticks
        if days
    ]
    legend = _legend([("spent", "#0072B2"), ("limit", "#D55E00"), ("even pace", "#999999")])
    return _svg(title, desc, parts, legend)


def _axes(top: Decimal, plot_w: float, plot_h: float) -> list[str]:
    parts = [
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{LEFT + plot_w}" '
        f'y2="{TOP + plot_h}" stroke="#555"/>'
    ]
    for k in range(5):
        value = top * k / 4
        y = TOP + plot_h - plot_h * k / 4
        parts.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + plot_w}" y2="{y:.1f}" stroke="#ddd"/>'
        )
        parts.append(
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" '
            f'class="tick">{_short(value)}</text>'
        )
    return parts


def _category_labels(categories: list[str], slot: float) -> list[str]:
    every = max(1, -(-len(categories) // 6))  # at most 6 labels, so they never overlap
    return [
        f'<text x="{LEFT + i * slot + slot / 2:.1f}" y="{HEIGHT - BOTTOM + 16}" '
        f'text-anchor="middle" class="tick">{escape(_day_label(c))}</text>'
        for i, c in enumerate(categories)
        if i % every == 0
    ]


def _legend(items: list[tuple[str, str]]) -> str:
    return "".join(
        f'<li><span class="swatch" style="background:{colour}"></span>{escape(name)}</li>'
        for name, colour in items
    )


def _svg(title: str, desc: str, parts: list[str], legend: str) -> str:
    n = next(_ids)
    return (
        f'<figure class="chart"><svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="chart{n}-t chart{n}-d" preserveAspectRatio="xMidYMid meet">'
        f'<title id="chart{n}-t">{escape(title)}</title>'
        f'<desc id="chart{n}-d">{escape(desc)}</desc>{"".join(parts)}</svg>'
        f'<ul class="legend">{legend}</ul></figure>'
    )


def _day_label(text: str) -> str:
    """``2026-12-04`` as ``12-04``; anything else as it is."""
    return text[5:] if len(text) == 10 and text[4] == "-" else text


def _nice_max(value: Decimal) -> Decimal:
    """A round axis top at or above ``value``: 1, 2 or 5 times a power of ten."""
    if value <= 0:
        return Decimal(1)
    exponent = value.adjusted()
    for step in (1, 2, 5, 10):
        top = Decimal(step).scaleb(exponent)
        if top >= value:
            return top
    return Decimal(10).scaleb(exponent)


def _short(value: Decimal) -> str:
    """An axis label: few digits, exact where it can be."""
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value / 1000:.3g}k"
    return f"{value:.3g}" if abs(value) < 1 else f"{value.normalize():f}"
