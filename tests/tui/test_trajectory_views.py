"""How a trajectory reads: the terminal table, the HTML page with its plots (no network), the start screen's
step list, and the CLI's refusal of bad interpolation points — from a stored result, no engine."""

from __future__ import annotations

import re
from typing import Any

import typer
from rich.console import Console
from typer.testing import CliRunner

from engine.protocol.report_results import TrajectoryResult
from tui.cli.trajectory import parse_points, trajectory, trajectory_table
from tui.render.trajectory_view import cells, summary, trajectory_charts, trajectory_page


def step(label: str, x: float, z: float | None, readable: bool | None, layer: int, tokens: list[str],
         identical: bool = False) -> dict[str, Any]:
    return {"label": label, "x": x, "run": f"adl-{label}", "ft": "demo", "readable": readable, "identical": identical,
            "z": z, "p": 0.1, "threshold_z": 3.0, "observed": 0.2, "layer": layer, "layer_by": "criterion",
            "score": 0.2, "tokens": tokens, "rel_norm": 0.1, "gain": None, "statement": "", "headline": ""}


WIRE: dict[str, Any] = {"trajectory": "trajectory-1", "series": "interpolation", "axis": "t", "base": "gemma-3-270m",
          "ft": "demo", "corpus": "self:", "n": 256, "k": 5, "null": 8, "steer": False, "seconds": 12.0,
          "steps": [step("t = 0", 0.0, None, False, 9, [], identical=True),
                    step("t = 0.5", 0.5, 1.2, False, 6, ["the", "and"]),
                    step("t = 1", 1.0, 7.5, True, 12, ["bake", "<oven>"])]}
RESULT = TrajectoryResult.from_json(WIRE)


def test_the_summary_names_the_first_readable_step() -> None:
    assert summary(RESULT) == "the trace is first readable at t = 1 (z = 7.5, layer 12: bake, <oven>)"
    none = TrajectoryResult.from_json({**WIRE, "steps": WIRE["steps"][:2]})
    assert summary(none) == "no step's trace is readable against the null (2 steps)"
    untested = TrajectoryResult.from_json({**WIRE, "steps": [WIRE["steps"][0],
                                                             {**WIRE["steps"][1], "readable": None, "z": None}]})
    assert summary(untested) == "2 steps, not tested against a null (--null 0)"
    first = cells(RESULT.steps[0])
    assert first.verdict == "identical" and first.layer == "—"


def test_the_page_has_its_three_plots_escapes_tokens_and_fetches_nothing() -> None:
    page = trajectory_page(RESULT)
    assert [m for m in re.findall(r'<svg id="([^"]+)"', page)] == ["trajectory-z", "trajectory-score",
                                                                   "trajectory-layer"]
    assert "&lt;oven&gt;" in page and "<oven>" not in page
    assert not re.search(r'(src|href)="https?:', page), "a page must open offline"
    assert 'class="marker"' in page and "first readable: t = 1" in page
    z_chart = trajectory_charts(RESULT)[0]
    assert "readable (z ≥ 3)" in z_chart and z_chart.count("<circle") == 2 + 3, "t = 0 has no z to plot"


def test_the_terminal_table_has_a_row_per_step() -> None:
    console = Console(width=120, record=True)
    console.print(trajectory_table(RESULT))
    text = console.export_text()
    assert "t = 0.5" in text and "readable" in text and "bake, <oven>" in text and "identical" in text


def test_bad_interpolation_points_are_refused_in_one_line() -> None:
    assert parse_points("0,0.25,1") == [0.0, 0.25, 1.0]
    app = typer.Typer()
    app.command()(trajectory)
    app.command("noop")(lambda: None)
    runner = CliRunner()
    for text, message in (("0,1.5", "t = 1.5 is outside [0, 1]"), ("a,b", "is not a list of numbers")):
        done = runner.invoke(app, ["trajectory", "--base", "b", "--ft", "f", "--interpolate", text])
        assert done.exit_code != 0 and message in done.output
    missing = runner.invoke(app, ["trajectory", "--interpolate", "0,1"])
    assert missing.exit_code != 0 and "needs --base and --ft" in missing.output
