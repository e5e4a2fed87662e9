"""A colour-blind-safe sequential palette (viridis) in xterm-256 colours, so 256-colour terminals show it as-is."""

from __future__ import annotations

import math

from rich.style import Style
from rich.text import Text

# viridis, dark purple → yellow, each step the nearest xterm-256 colour; luminance rises monotonically.
VIRIDIS_256 = (53, 54, 24, 30, 36, 72, 77, 148, 220)
_DARK_STEPS = 4  # the first steps are dark: write on them in white, on the rest in black


def step_for(value: float, lo: float, hi: float) -> int:
    """Palette step of `value` on the scale [lo, hi] (clipped); NaN and a flat scale give step 0."""
    if math.isnan(value) or hi <= lo:
        return 0
    frac = min(1.0, max(0.0, (value - lo) / (hi - lo)))
    return min(len(VIRIDIS_256) - 1, int(frac * len(VIRIDIS_256)))


def cell_style(step: int, *, bold: bool = False) -> Style:
    """Background of palette `step` with a readable foreground."""
    fg = "color(231)" if step < _DARK_STEPS else "color(16)"
    return Style(color=fg, bgcolor=f"color({VIRIDIS_256[step]})", bold=bold)


def legend_bar(width: int) -> Text:
    """The palette as a bar `width` cells wide, low values on the left."""
    bar = Text()
    n = len(VIRIDIS_256)
    for i in range(max(1, width)):
        bar.append(" ", cell_style(min(n - 1, i * n // max(1, width))))
    return bar


def fmt_value(value: float) -> str:
    """A metric value in at most 5 characters."""
    if math.isnan(value):
        return "nan"
    mag = abs(value)
    if mag >= 10_000:
        return f"{value:.0e}".replace("e+0", "e")
    if mag >= 100:
        return f"{value:.0f}"
    if mag >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"
