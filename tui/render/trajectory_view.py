"""A trajectory, as the terminal, the HTML page and the workbench show it: one row per step, and its plots."""

from __future__ import annotations

import math
from typing import Any

from markupsafe import Markup

from tui.render.report_html import PAGES, STYLE
from tui.render.svg_plots import Series, line_chart


def verdict(row: dict[str, Any]) -> str:
    """One word for the step's significance: readable, none, identical (the base itself), untested."""
    if row.get("identical"):
        return "identical"
    if row.get("readable") is None:
        return "untested"
    return "readable" if row["readable"] else "none"


def number(value: Any, digits: int = 2) -> str:
    if not isinstance(value, int | float) or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return "∞" if math.isinf(value) else f"{value:.{digits}f}"


def cells(row: dict[str, Any]) -> dict[str, str]:
    """A step's table cells, the same strings in the terminal and the page."""
    layer = f"{row['layer']}" + ("" if row.get("layer_by") == "criterion" else f" ({row.get('layer_by')})")
    return {"label": row["label"], "verdict": verdict(row), "z": number(row.get("z"), 1), "p": number(row.get("p"), 3),
            "score": number(row.get("score"), 3), "layer": "—" if row.get("identical") else layer,
            "rel_norm": number(row.get("rel_norm"), 3), "gain": number(row.get("gain"), 3),
            "tokens": ", ".join(row.get("tokens") or []) or "—", "run": row["run"]}


def first_readable(result: dict[str, Any]) -> dict[str, Any] | None:
    return next((row for row in result["steps"] if row.get("readable")), None)


def summary(result: dict[str, Any]) -> str:
    """The sentence a trajectory leads with: where along the series the trace first becomes readable."""
    first = first_readable(result)
    if first is None and all(row.get("readable") is None or row.get("identical") for row in result["steps"]):
        return f"{len(result['steps'])} steps, not tested against a null (--null 0)"
    if first is None:
        return f"no step's trace is readable against the null ({len(result['steps'])} steps)"
    return (f"the trace is first readable at {first['label']} (z = {number(first.get('z'), 1)}, layer "
            f"{first['layer']}: {', '.join(first.get('tokens') or [])})")


def trajectory_charts(result: dict[str, Any]) -> list[str]:
    """Significance z per step (with the readable line), the criterion score and steering gain, the chosen layer."""
    steps = result["steps"]
    x = [float(row["x"]) for row in steps]
    first = first_readable(result)
    marked_x = float(first["x"]) if first else None
    marked_label = f"first readable: {first['label']}" if first else ""
    z = [None if row.get("identical") else _finite(row.get("z")) for row in steps]
    z_series = [Series("z", z)]
    if (threshold := next((row["threshold_z"] for row in steps if row.get("threshold_z")), None)) is not None:
        z_series.append(Series(f"readable (z ≥ {threshold:g})", [float(threshold)] * len(x)))
    charts = [line_chart("trajectory-z", "Significance of the trace against the null, per step", x, z_series,
                         x_label=result["axis"], y_label="z", marked_x=marked_x, marked_label=marked_label)]
    series = [Series("criterion score", [row.get("score") for row in steps])]
    if any(row.get("gain") is not None for row in steps):
        series.append(Series("steering gain", [row.get("gain") for row in steps]))
    charts.append(line_chart("trajectory-score", "Layer criterion at the chosen layer, and steering gain", x, series,
                             x_label=result["axis"], y_label="score / gain", marked_x=marked_x,
                             marked_label=marked_label))
    charts.append(line_chart("trajectory-layer", "Chosen layer per step", x,
                             [Series("chosen layer", [None if row.get("identical") else float(row["layer"])
                                                      for row in steps])],
                             x_label=result["axis"], y_label="layer", height=200, marked_x=marked_x,
                             marked_label=marked_label))
    return charts


def _finite(value: Any) -> float | None:
    """A z for the plot: an infinite z (a null with no spread) is drawn at the top of the finite ones."""
    if not isinstance(value, int | float) or math.isnan(value):
        return None
    return float(value) if math.isfinite(value) else None


def trajectory_page(result: dict[str, Any]) -> str:
    """The static page: the plots, then the table of steps."""
    title = f"difflens trajectory: {result['base']} → {result['ft']} ({result['series']})"
    subtitle = (f"{len(result['steps'])} steps on {result['n']} texts of {result['corpus']}, first {result['k']} "
                f"tokens; {summary(result)}.")
    null_note = (f"Every step is tested against the same null of {result['null']} random adapters with the last "
                 "step's rank and norm (docs/trajectories.md)." if result["null"]
                 else "No significance test (--null 0).")
    significance_chart, score_chart, layer_chart = (Markup(chart) for chart in trajectory_charts(result))
    return PAGES.get_template("trajectory.html").render(
        title=title, css=STYLE, subtitle=subtitle, null_note=null_note,
        rows=[{**cells(row), "readable": bool(row.get("readable"))} for row in result["steps"]],
        significance_chart=significance_chart, score_chart=score_chart, layer_chart=layer_chart)
