"""A trajectory, as the terminal, the HTML page and the workbench show it: one row per step, and its plots."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from markupsafe import Markup

from engine.protocol.report_results import TrajectoryResult, TrajectoryStep
from tui.render.report_html import PAGES, STYLE
from tui.render.svg_plots import Series, line_chart


def verdict(row: TrajectoryStep) -> str:
    """One word for the step's significance: readable, none, identical (the base itself), untested."""
    if row.identical:
        return "identical"
    if row.readable is None:
        return "untested"
    return "readable" if row.readable else "none"


def number(value: float | None, digits: int = 2) -> str:
    if value is None or math.isnan(value):
        return "—"
    return "∞" if math.isinf(value) else f"{value:.{digits}f}"


@dataclass(frozen=True)
class StepCells:
    """A step's table cells, the same strings in the terminal, the workbench and the page."""

    label: str
    verdict: str
    z: str
    p: str
    score: str
    layer: str
    rel_norm: str
    gain: str
    tokens: str
    run: str


def cells(row: TrajectoryStep) -> StepCells:
    """A step's table cells."""
    layer = f"{row.layer}" + ("" if row.layer_by == "criterion" else f" ({row.layer_by})")
    return StepCells(label=row.label, verdict=verdict(row), z=number(row.z, 1), p=number(row.p, 3),
                     score=number(row.score, 3), layer="—" if row.identical else layer,
                     rel_norm=number(row.rel_norm, 3), gain=number(row.gain, 3), tokens=", ".join(row.tokens) or "—",
                     run=row.run)


def first_readable(result: TrajectoryResult) -> TrajectoryStep | None:
    return next((row for row in result.steps if row.readable), None)


def summary(result: TrajectoryResult) -> str:
    """The sentence a trajectory leads with: where along the series the trace first becomes readable."""
    first = first_readable(result)
    if first is None and all(row.readable is None or row.identical for row in result.steps):
        return f"{len(result.steps)} steps, not tested against a null (--null 0)"
    if first is None:
        return f"no step's trace is readable against the null ({len(result.steps)} steps)"
    return (f"the trace is first readable at {first.label} (z = {number(first.z, 1)}, layer "
            f"{first.layer}: {', '.join(first.tokens)})")


def trajectory_charts(result: TrajectoryResult) -> list[str]:
    """Significance z per step (with the readable line), the criterion score and steering gain, the chosen layer."""
    steps = result.steps
    x = [row.x for row in steps]
    first = first_readable(result)
    marked_x = first.x if first else None
    marked_label = f"first readable: {first.label}" if first else ""
    z = [None if row.identical else _finite(row.z) for row in steps]
    z_series = [Series("z", z)]
    if (threshold := next((row.threshold_z for row in steps if row.threshold_z), None)) is not None:
        z_series.append(Series(f"readable (z ≥ {threshold:g})", [threshold] * len(x)))
    charts = [line_chart("trajectory-z", "Significance of the trace against the null, per step", x, z_series,
                         x_label=result.axis, y_label="z", marked_x=marked_x, marked_label=marked_label)]
    series = [Series("criterion score", [row.score for row in steps])]
    if any(row.gain is not None for row in steps):
        series.append(Series("steering gain", [row.gain for row in steps]))
    charts.append(line_chart("trajectory-score", "Layer criterion at the chosen layer, and steering gain", x, series,
                             x_label=result.axis, y_label="score / gain", marked_x=marked_x,
                             marked_label=marked_label))
    charts.append(line_chart("trajectory-layer", "Chosen layer per step", x,
                             [Series("chosen layer", [None if row.identical or row.layer is None else float(row.layer)
                                                      for row in steps])],
                             x_label=result.axis, y_label="layer", height=200, marked_x=marked_x,
                             marked_label=marked_label))
    return charts


def _finite(value: float | None) -> float | None:
    """A z for the plot: an infinite z (a null with no spread) is drawn at the top of the finite ones."""
    if value is None or math.isnan(value):
        return None
    return value if math.isfinite(value) else None


def trajectory_page(result: TrajectoryResult) -> str:
    """The static page: the plots, then the table of steps."""
    title = f"difflens trajectory: {result.base} → {result.ft} ({result.series})"
    subtitle = (f"{len(result.steps)} steps on {result.n} texts of {result.corpus}, first {result.k} "
                f"tokens; {summary(result)}.")
    null_note = (f"Every step is tested against the same null of {result.null} random adapters with the last "
                 "step's rank and norm (docs/trajectories.md)." if result.null
                 else "No significance test (--null 0).")
    significance_chart, score_chart, layer_chart = (Markup(chart) for chart in trajectory_charts(result))
    return PAGES.get_template("trajectory.html").render(
        title=title, css=STYLE, subtitle=subtitle, null_note=null_note,
        rows=[{**asdict(cells(row)), "readable": bool(row.readable)} for row in result.steps],
        significance_chart=significance_chart, score_chart=score_chart, layer_chart=layer_chart)
