"""The terminal triage report: the criterion per layer and the report layer's tokens; the full grid on --grid."""

from __future__ import annotations

import json
from pathlib import Path

from tui.cli.output import out
from tui.cli.triage import render_report

DEMO_REPORT = Path(__file__).resolve().parents[1] / "data" / "demo_triage.json"


def printed(grid: bool, **fields: object) -> str:
    report = {"lens_heads": {"diff": "ft"}, **json.loads(DEMO_REPORT.read_text()), **fields}
    width = out.width
    out.width = 200
    try:
        with out.capture() as captured:
            render_report(report, grid=grid)
    finally:
        out.width = width
    return captured.get()


def test_report_shows_the_criterion_per_layer_and_the_chosen_layers_tokens_without_the_grid() -> None:
    text = printed(grid=False)
    assert "where the trace is, per layer" in text and "relevance" in text
    rows = [line for line in text.splitlines() if line.startswith("│ 17 ")]
    assert rows and "0.53" in rows[0] and "0.90" in rows[0]  # criterion and relevance of layer 17
    assert "logit lens of the mean diff at layer 15" in text and "␣cookbook" in text
    assert "pos 4" not in text and "ilberger" not in text  # layer 0's tokens are only in the grid


def test_grid_flag_prints_every_layer_and_position() -> None:
    text = printed(grid=True)
    assert "pos 0" in text and "pos 4" in text and "ilberger" in text


def test_a_paper_report_shows_the_references_relevance_per_target_source_and_variant() -> None:
    shares = {"n": 5, "ungraded": 0, "percentage": 0.4, "weighted_percentage": 0.55, "trivial_percentage": 0.1,
              "filtered_percentage": None, "weighted_filtered_percentage": None}
    paper = {"patchscope": {"difference": [{"best_scale": 3.0}, {"best_scale": 20.0}], "base": [{"best_scale": 0.5}]},
             "relevance": {"summary": {"self": {"logitlens": {"difference": shares}},
                                       "taboo-word": {"patchscope": {"ft": shares | {"percentage": 0.0,
                                                                                      "ungraded": 2, "n": 3}}}}}}
    text = printed(False, protocol="paper", paper=paper)
    assert "token relevance as the reference grades it (protocol paper" in text
    assert "Patchscope scale per position: difference 3, 20; base 0.5" in text
    [own] = [line for line in text.splitlines() if "│ self " in line]
    cells = [c.strip() for c in own.split("│")[1:9]]
    assert cells == ["self", "logitlens", "difference", "40%", "55%", "10%", "—", "—"]
    [baseline] = [line for line in text.splitlines() if "taboo-word" in line]
    assert " 0% " in baseline and "3 (2 ungraded)" in baseline
    without = printed(False, protocol="paper", paper={**paper, "relevance": None})
    assert "no token relevance (nothing describes the finetune" in without
