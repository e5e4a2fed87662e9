"""Small inline-SVG charts for the HTML reports: lines over a shared x axis, and horizontal bars.

Written here rather than drawn by a plotting library: matplotlib (with numpy and its font cache) or pygal would
add tens of MB and seconds of import to the torch-free `tui` room for four charts of at most a few hundred
points, and their SVG embeds fonts or scripts. These are plain `<svg>` elements with `<title>` tooltips, no
script and no external reference, so a page reads offline. Every label is XML-escaped here, and the caller
marks the result safe for Jinja2.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass

# Okabe–Ito colours: told apart with the common colour-vision deficiencies; each series also has its own dash.
SERIES_COLOURS = ["#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000", "#f0e442"]
DASHES = ["", "6 3", "2 3", "8 3 2 3", "1 2", "4 2 1 2", "10 4", "3 3"]
FONT = 'font-family="system-ui,sans-serif" font-size="11"'


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


@dataclass(frozen=True)
class Series:
    """One line: a name for the legend and a y value per x (None where there is none)."""

    name: str
    values: Sequence[float | None]


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]."""
    span = hi - lo or 1.0
    raw = span / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _label(value: float) -> str:
    return f"{value:.3g}"


def _x_ticks(x: Sequence[float], log_x: bool) -> list[float]:
    """Where the x axis is labelled: 1-2-5 steps on a log axis, every value (or every n-th of many) otherwise."""
    if not log_x:
        return list(x) if len(x) <= 24 else list(x)[:: math.ceil(len(x) / 24)]
    lo, hi = min(x), max(x)
    decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
    return [m * 10.0 ** d for d in decades for m in (1, 2, 5) if lo <= m * 10.0 ** d <= hi]


def line_chart(chart_id: str, title: str, x: Sequence[float], series: Sequence[Series], *, x_label: str,
               y_label: str, marked_x: float | None = None, marked_label: str = "", log_x: bool = False,
               width: int = 720, height: int = 260) -> str:
    """Lines of `series` over `x` (each point has a tooltip), with an optional vertical marker at `marked_x`."""
    left, right, top, bottom = 48, 150, 26, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    xs = [math.log10(v) if log_x else float(v) for v in x]
    x_lo, x_hi = (min(xs), max(xs)) if xs else (0.0, 1.0)
    x_hi = x_hi if x_hi > x_lo else x_lo + 1
    values = [v for s in series for v in s.values if v is not None]
    y_hi = max([*values, 0.0]) or 1.0
    y_lo = min([*values, 0.0])

    def px(value: float) -> float:
        return left + plot_w * ((math.log10(value) if log_x else value) - x_lo) / (x_hi - x_lo)

    def py(value: float) -> float:
        return top + plot_h * (1 - (value - y_lo) / (y_hi - y_lo or 1.0))

    parts = [f'<svg id="{_esc(chart_id)}" class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}"><title>{_esc(title)}</title>',
             f'<text x="{left}" y="14" {FONT} font-weight="600">{_esc(title)}</text>']
    for tick in _ticks(y_lo, y_hi):
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{py(tick):.1f}" y2="{py(tick):.1f}" '
                     f'stroke="#e4e4e4"/><text x="{left - 4}" y="{py(tick) + 4:.1f}" text-anchor="end" {FONT}>'
                     f"{_label(tick)}</text>")
    for value in _x_ticks(x, log_x) if x else []:
        parts.append(f'<text x="{px(value):.1f}" y="{top + plot_h + 14}" text-anchor="middle" {FONT}>'
                     f"{_label(value)}</text>")
    parts.append(f'<text x="{left + plot_w / 2}" y="{height - 4}" text-anchor="middle" {FONT}>{_esc(x_label)}</text>'
                 f'<text transform="translate(11,{top + plot_h / 2}) rotate(-90)" text-anchor="middle" {FONT}>'
                 f"{_esc(y_label)}</text>")
    parts.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>')
    if marked_x is not None:
        mx = px(marked_x)
        parts.append(f'<line class="marker" x1="{mx:.1f}" x2="{mx:.1f}" y1="{top}" y2="{top + plot_h}" '
                     f'stroke="#000" stroke-width="2"/><text x="{mx + 3:.1f}" y="{top + 11}" {FONT}>'
                     f"{_esc(marked_label)}</text>")
    for index, one in enumerate(series):
        colour, dash = SERIES_COLOURS[index % len(SERIES_COLOURS)], DASHES[index % len(DASHES)]
        points = [(px(xv), py(yv), xv, yv) for xv, yv in zip(x, one.values, strict=True) if yv is not None]
        if not points:
            continue
        path = " ".join(f"{a:.1f},{b:.1f}" for a, b, _, _ in points)
        parts.append(f'<polyline class="series" fill="none" stroke="{colour}" stroke-width="2" '
                     f'stroke-dasharray="{dash}" points="{path}"/>')
        parts += [f'<circle cx="{a:.1f}" cy="{b:.1f}" r="2.5" fill="{colour}"><title>{_esc(one.name)} at '
                  f"{_label(xv)}: {yv:.4g}</title></circle>" for a, b, xv, yv in points]
        ly = top + 12 + 16 * index
        parts.append(f'<line x1="{left + plot_w + 10}" x2="{left + plot_w + 34}" y1="{ly - 4}" y2="{ly - 4}" '
                     f'stroke="{colour}" stroke-width="2" stroke-dasharray="{dash}"/>'
                     f'<text x="{left + plot_w + 38}" y="{ly}" {FONT}>{_esc(one.name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


@dataclass(frozen=True)
class Bar:
    """One bar: its label, its value (None: no value, drawn as a dash) and an optional note after the value."""

    label: str
    value: float | None
    note: str = ""


def bar_chart(chart_id: str, title: str, bars: Sequence[Bar], *, width: int = 720, label_width: int = 220) -> str:
    """Horizontal bars, one row each, scaled to the largest |value| (negative values run left of the axis)."""
    row, top = 22, 24
    height = top + row * len(bars) + 8
    plot_w = width - label_width - 90
    values = [b.value for b in bars if b.value is not None]
    scale = max([abs(v) for v in values] + [0.0]) or 1.0
    has_negative = any(v < 0 for v in values)
    zero = label_width + (plot_w / 2 if has_negative else 0)
    span = plot_w / 2 if has_negative else plot_w
    parts = [f'<svg id="{_esc(chart_id)}" class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}"><title>{_esc(title)}</title>',
             f'<text x="0" y="14" {FONT} font-weight="600">{_esc(title)}</text>']
    for index, one in enumerate(bars):
        y = top + row * index
        parts.append(f'<text x="{label_width - 6}" y="{y + 14}" text-anchor="end" {FONT}>{_esc(one.label)}</text>')
        if one.value is None:
            parts.append(f'<text x="{zero + 4}" y="{y + 14}" {FONT}>— {_esc(one.note)}</text>')
            continue
        length = span * abs(one.value) / scale
        x = zero - length if one.value < 0 else zero
        colour = SERIES_COLOURS[1] if one.value < 0 else SERIES_COLOURS[0]
        parts.append(f'<rect class="bar" x="{x:.1f}" y="{y + 3}" width="{length:.1f}" height="{row - 8}" '
                     f'fill="{colour}"><title>{_esc(one.label)}: {one.value:.4g}</title></rect>'
                     f'<text x="{max(x + length, zero) + 4:.1f}" y="{y + 14}" {FONT}>{one.value:.3g} '
                     f"{_esc(one.note)}</text>")
    parts.append(f'<line x1="{zero}" x2="{zero}" y1="{top}" y2="{height - 6}" stroke="#666"/></svg>')
    return "".join(parts)
