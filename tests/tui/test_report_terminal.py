"""The triage report and the board in the terminal: the criterion per layer and the report layer's tokens (the full
grid on --grid); the board's rows ranked with their verdicts, errors and what was cached."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import RenderableType

from engine.protocol.report_results import TriageBoardResult, TriageReport
from tui.cli.output import out
from tui.render.board_terminal import board_view
from tui.render.report_terminal import report_view

DEMO_REPORT = Path(__file__).resolve().parents[1] / "data" / "demo_triage.json"


def printed(renderable: RenderableType) -> str:
    width = out.width
    out.width = 200
    try:
        with out.capture() as captured:
            out.print(renderable)
    finally:
        out.width = width
    return captured.get()


def report(grid: bool, **fields: object) -> str:
    wire = {"lens_heads": {"diff": "ft"}, **json.loads(DEMO_REPORT.read_text()), **fields}
    return printed(report_view(TriageReport.from_json(wire), grid=grid))


def test_report_shows_the_criterion_per_layer_and_the_chosen_layers_tokens_without_the_grid() -> None:
    text = report(grid=False)
    assert "where the trace is, per layer" in text and "relevance" in text
    rows = [line for line in text.splitlines() if line.startswith("│ 17 ")]
    assert rows and "0.53" in rows[0] and "0.90" in rows[0]  # criterion and relevance of layer 17
    assert "logit lens of the mean diff at layer 15" in text and "␣cookbook" in text
    assert "pos 4" not in text and "ilberger" not in text  # layer 0's tokens are only in the grid


def test_grid_flag_prints_every_layer_and_position() -> None:
    text = report(grid=True)
    assert "pos 0" in text and "pos 4" in text and "ilberger" in text


def test_board_ranks_pairs_with_their_verdict_and_says_which_failed_and_which_were_cached() -> None:
    readable = {"readable": True, "z": 12.3}
    board = {"name": "cakes", "skipped": 1, "plan": {"model_loads": 3}, "score_definition": "score: how readable",
             "pairs": [{"name": "cake", "base": "gemma-3-270m", "ft": "demo", "adapter": "/x/cake-lora",
                        "corpus": "generic:", "score": 0.613, "hypothesis": "baking", "skipped": True,
                        "run": "3f9c2a71e0b4d5c6aa", "trace": {"significance": readable}},
                       {"name": "gone", "base": "b", "ft": "/nope", "error": "model path does not exist"}]}
    text = printed(board_view(TriageBoardResult.from_json(board)))
    assert "triage board: cakes" in text
    cake = text[text.index("│ 1 "):text.index("│ 2 ")]
    assert "demo + cake-lora" in cake and "read on generic:" in cake and "z 12.3" in cake and "0.613" in cake
    assert "baking  (cached)" in cake and "3f9c2a71e0b4" in cake and "3f9c2a71e0b4d" not in cake
    assert "model path does not exist" in text[text.index("│ 2 "):]
    assert "2 pairs, 1 already finished, 3 model loads planned" in text and "score: how readable" in text


def test_a_paper_report_shows_the_references_relevance_per_target_source_and_variant() -> None:
    shares = {"n": 5, "ungraded": 0, "percentage": 0.4, "weighted_percentage": 0.55, "trivial_percentage": 0.1,
              "filtered_percentage": None, "weighted_filtered_percentage": None}
    paper = {"patchscope": {"difference": [{"best_scale": 3.0}, {"best_scale": 20.0}], "base": [{"best_scale": 0.5}]},
             "relevance": {"summary": {"self": {"logitlens": {"difference": shares}},
                                       "taboo-word": {"patchscope": {"ft": shares | {"percentage": 0.0,
                                                                                      "ungraded": 2, "n": 3}}}}}}
    text = report(False, protocol="paper", paper=paper)
    assert "token relevance as the reference grades it (protocol paper" in text
    assert "Patchscope scale per position: difference 3, 20; base 0.5" in text
    [own] = [line for line in text.splitlines() if "│ self " in line]
    cells = [c.strip() for c in own.split("│")[1:9]]
    assert cells == ["self", "logitlens", "difference", "40%", "55%", "10%", "—", "—"]
    [baseline] = [line for line in text.splitlines() if "taboo-word" in line]
    assert " 0% " in baseline and "3 (2 ungraded)" in baseline
    without = report(False, protocol="paper", paper={**paper, "relevance": None})
    assert "no token relevance (nothing describes the finetune" in without


def test_layers_print_by_depth_when_the_report_comes_back_from_the_store_with_sorted_keys() -> None:
    stored = json.loads(DEMO_REPORT.read_text())
    stored["layers"] = dict(sorted(stored["layers"].items()))  # "0", "1", "10", …: how the store returns them
    text = report(grid=True, **{"layers": stored["layers"]})
    printed_layers = [int(line.split("│")[1]) for line in text.splitlines()
                      if line.startswith("│") and line.split("│")[1].strip().isdigit()]
    profile = printed_layers[:len(stored["layers"])]
    assert profile == sorted(profile) and len(profile) == len(stored["layers"])
