"""Every shape of a triage report, a board and a trajectory reads as its typed result and gives its wire back.

The sections are built by the engine's own functions where they are torch-free to call (the verdict against the
null, a board row's significance and trace, a trajectory step), so a change of what the engine writes shows here.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.protocol import methods
from engine.protocol.params import ParamsError
from engine.protocol.report_results import BoardEntry, TriageReport
from engine.results.layer_choice import Criterion, LayerChoice
from engine.results.significance import (
    NO_TRACE,
    READABLE,
    NullTable,
    against,
    board_significance,
    compare,
    statement,
    with_evidence,
)
from engine.triage.score import trace_strength
from engine.triage.trajectory import step_row
from engine.triage.trajectory_steps import Step

DEMO = json.loads((Path(__file__).resolve().parents[1] / "data" / "demo_triage.json").read_text())
NULL = NullTable(np.asarray([[0.05, 0.10, 0.08], [0.12, 0.04, 0.07], [0.06, 0.09, 0.11]], np.float32), [0, 1, 2],
                 ["null-0", "null-1", "null-2"], {"rank": 8}, 1.5)


def _verdict(sig: dict[str, Any]) -> dict[str, Any]:
    return {**sig, "tested": True, "verdict": READABLE if sig["readable"] else NO_TRACE, "statement": statement(sig)}


def _tested() -> dict[str, Any]:
    """A readable verdict with both further tests: relevance clears its null, the steering gain was not tested."""
    choice = LayerChoice(2, "criterion", 1, {0: 0.1, 1: 0.2, 2: 0.48}, {}, Criterion())
    relevance = {"tested": True, **against(0.42, np.asarray([0.1, 0.12, 0.08]))}
    gain = {"tested": False, "statement": "steering gain not tested: fewer than two null adapters could be steered"}
    return with_evidence(_verdict(compare(choice, NULL)), relevance, gain)


UNTESTED = {"readable": None, "tested": False, "statement": "not tested against a null (--null 0)"}
IDENTICAL = _verdict({"readable": False, "identical": True, "observed": 0.0, "n_null": 0})
FLAT_NULL = _verdict({**compare(LayerChoice(2, "user", 1, {2: 0.5}, {}, Criterion()),
                                NullTable(np.zeros((3, 3), np.float32), [0, 1, 2], ["a", "b", "c"], {}, 0.0)),
                      "z": math.inf})


def _paper() -> dict[str, Any]:
    scope = {"pos": 1, "best_scale": 20.0, "selected": [" cake"], "chosen_by": "stability", "judge": "offline",
             "tokens": [[" cake", 0.4]]}
    means = {"n": 4, "ungraded": 1, "percentage": 0.5, "weighted_percentage": 0.6, "trivial_percentage": 0.0,
             "filtered_percentage": None, "weighted_filtered_percentage": None}
    return {"patchscope": {"difference": [scope], "base": [scope], "ft": [scope]},
            "relevance": {"layer": 15, "positions": [1], "judge": "offline", "targets": [{"name": "self"}],
                          "cells": [{"target": "self", "source": "logitlens", "variant": "ft", "pos": 1,
                                     "ungraded": "no candidate tokens"}],
                          "summary": {"self": {"logitlens": {"ft": means}}}}}


def reports() -> dict[str, dict[str, Any]]:
    """The demo report as stored before significance, and as a current engine writes it in each outcome."""
    current = {**DEMO, "protocol": "default", "lens_heads": {"diff": "ft", "base": "base", "ft": "ft"},
               "judges": {"relevance": "offline", "coherence": "offline"}, "headline": "cake",
               "significance": _tested()}
    no_steering = {**current, "steering": {}, "steering_similarity": None, "significance": UNTESTED,
                   "relevance_summary": None, "description": None}
    return {"stored before significance": DEMO, "readable, both tests": current,
            "no steering, untested": no_steering,
            "identical pair": {**no_steering, "significance": IDENTICAL, "hypothesis": None},
            "a null that never moves (z = inf)": {**current, "significance": FLAT_NULL},
            "protocol paper": {**current, "protocol": "paper", "paper": _paper()},
            "paper with nothing describing the finetune": {**current, "protocol": "paper",
                                                            "paper": {**_paper(), "relevance": None}},
            "a newer engine's extra keys": {**current, "novelty": {"x": 1},
                                            "significance": {**_tested(), "bayes_factor": 3.0}}}


@pytest.mark.parametrize("shape", list(reports()))
def test_every_report_shape_reads_typed_and_gives_its_wire_back(shape: str) -> None:
    wire = reports()[shape]
    kept = copy.deepcopy(wire)
    report = methods.TRIAGE_PAIR.result.from_json(wire)
    assert report.to_json() == kept and wire == kept
    assert report.layer_row()[str(report.read_positions()[-1])].logit_lens
    sig = report.significance
    if shape == "stored before significance":
        assert sig is None and report.lens_heads.diff == "" and report.hypothesis is not None
    elif shape == "identical pair":
        assert sig is not None and sig.identical and sig.readable is False and sig.short() == NO_TRACE
    elif shape == "no steering, untested":
        assert sig is not None and sig.readable is None and sig.short() == "untested" and not report.steering
    elif shape == "readable, both tests":
        assert sig is not None and sig.readable and sig.relevance is not None and sig.relevance.clears
        assert sig.steering_gain is not None and not sig.steering_gain.tested and sig.null_layer_scores["2"]
    if report.paper is not None and report.paper.relevance is not None:
        assert report.paper.relevance.means["self"]["logitlens"]["ft"].ungraded == 1


def board() -> dict[str, Any]:
    """A board as the engine sends it: a pair with its trace, verdict and report, and a pair that failed."""
    report = reports()["readable, both tests"]
    trace = trace_strength(report) | {"significance": board_significance(report["significance"])}
    done = {"name": "cake", "base": "gemma-3-270m", "ft": "demo", "adapter": None, "description": None,
            "score": trace["score"], "trace": trace, "hypothesis": "baking", "hypothesis_source": "keywords",
            "run": report["run"], "corpus": report["corpus"], "error": None, "skipped": False, "seconds": 3.2,
            "report": report}
    failed = {"name": "gone", "base": "b", "ft": "/nope", "adapter": None, "description": None, "score": None,
              "trace": None, "hypothesis": None, "hypothesis_source": None, "run": None, "corpus": None,
              "error": "model path does not exist", "skipped": False, "seconds": 0.0}
    return {"board": "board-1", "name": "cakes", "source": "pairs.yaml", "pairs": [done, failed],
            "plan": {"order": ["cake", "gone"], "model_loads": 2}, "skipped": 0, "score_definition": "score: …"}


def test_a_board_reads_typed_with_its_failed_row_and_gives_its_wire_back() -> None:
    wire = board()
    result = methods.TRIAGE_BOARD.result.from_json(wire)
    assert result.to_json() == wire
    done, failed = result.pairs
    assert isinstance(done.report, TriageReport) and done.trace is not None and done.verdict().startswith("z ")
    assert failed.error and failed.report is None and failed.trace is None and failed.verdict() == "untested"
    assert result.plan.model_loads == 2
    latest = methods.TRIAGE_BOARDS.result.from_json({"board": wire})
    assert latest.board is not None and latest.board.to_json() == wire
    assert methods.TRIAGE_BOARDS.result.from_json({"board": None}).board is None


def test_a_trajectory_reads_typed_step_by_step_and_gives_its_wire_back() -> None:
    rows = [step_row(Step("base", 0, None), reports()["identical pair"]),  # type: ignore[arg-type]
            step_row(Step("t = 1", 1.0, None), reports()["readable, both tests"])]  # type: ignore[arg-type]
    wire = {"trajectory": "trajectory-1", "series": "interpolation", "axis": "t", "base": "b", "ft": "demo",
            "corpus": "self:", "n": 64, "k": 5, "null": 3, "steer": True, "steps": rows, "seconds": 9.5}
    result = methods.TRAJECTORY.result.from_json(wire)
    assert result.to_json() == wire
    assert result.steps[0].identical and result.steps[1].readable and result.steps[1].tokens
    listed = {"trajectories": [{"trajectory": "trajectory-1", "series": "interpolation", "base": "b", "ft": "demo",
                                "steps": 2, "created": 1.0}], "latest": wire}
    trajectories = methods.TRAJECTORIES.result.from_json(listed)
    assert trajectories.to_json() == listed and trajectories.latest is not None
    assert trajectories.latest.steps[1].layer == rows[1]["layer"]


def test_a_section_of_the_wrong_type_is_one_clear_error_not_a_crash_later() -> None:
    with pytest.raises(ParamsError, match="steering"):
        BoardEntry.from_json({"name": "x", "report": {**DEMO, "steering": ["not", "a", "table"]}})
