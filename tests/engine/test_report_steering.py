"""The report's steering samples are the calibration's own (one set of settings, `REPORT_STEERING`), are cached per
cell so a single-cell request (the workbench's `r`) is answered by them, and stream steered beside unsteered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.adl.request import AdlRequest
from engine.adl.runs import load_run
from engine.jobs import store_only
from engine.protocol.methods import REPORT_STEERING, TriageSettings
from engine.results import calibrated_steering
from engine.results.calibrated_steering import steer, steer_cells
from engine.steering.steering_prompts import default_prompts
from engine.triage.pair_triage import triage


def _report_steer(run_id: str, layer: int, pos: int, strength: float) -> list[dict[str, Any]]:
    """What the workbench's first `r` at a cell asks for (tui/presets.STEER), as the steer op runs it."""
    s = REPORT_STEERING
    return steer(load_run(run_id), layer, pos, [strength], list(default_prompts()[: s.n_prompts]),
                 samples=s.n_samples, max_new_tokens=s.max_new_tokens, temperature=s.temperature, seed=s.seed)


def test_a_triage_reuses_its_calibration_samples_and_they_answer_the_workbench(
        tiny_dir: Path, tiny_ft_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_generation(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("steering generated samples that the calibration had drawn already")

    monkeypatch.setattr(calibrated_steering, "generate_rows", no_generation)  # steer_cells' generate, not calibration's
    report = triage(AdlRequest(base=str(tiny_dir), ft=str(tiny_ft_dir), corpus="self:", n=12, k=3), TriageSettings())
    steered = {int(pos): cell for pos, cell in report["steering"].items() if cell["strength"] > 0}
    assert steered, "the tiny pair calibrated no positive strength"
    for pos, cell in steered.items():
        assert [p["prompt"] for p in cell["prompts"]] == list(default_prompts()[: REPORT_STEERING.n_prompts])
        with store_only():  # the workbench's request at the calibrated α: from the cache, no model
            answer = _report_steer(report["run"], report["layer"], pos, cell["strength"])
        assert [(s["prompt"], s["steered"], s["unsteered"]) for s in answer] == \
            [(p["prompt"], p["steered"], p["unsteered"]) for p in cell["prompts"]]


def test_cells_are_cached_one_by_one_and_stream_both_columns_on_shared_lines(tiny_dir: Path, tiny_ft_dir: Path) -> None:
    from engine.adl.compute import compute_adl

    run = load_run(compute_adl(AdlRequest(base=str(tiny_dir), ft=str(tiny_ft_dir), corpus="self:", n=12, k=3)).run)
    prompts = ["the cake is", "hello"]
    events: list[dict[str, Any]] = []
    table = steer_cells(run, 1, [(1, 0.5), (2, 0.5)], prompts, samples=2, max_new_tokens=6, temperature=0.7,
                        on_partial=events.append)
    per_cell = len(prompts) * 2
    steered = [e for e in events if e["column"] == "steered"]
    plain = [e for e in events if e["column"] == "unsteered"]
    assert {e["line"] for e in steered} == {e["line"] for e in plain} == set(range(per_cell))
    # streaming together: steered text arrives while the unsteered rows are still being written
    assert events.index(steered[0]) < events.index(plain[-1])
    for e in steered:
        sample = table[(e["pos"], e["strength"])][e["line"]]
        assert sample["prompt"] == e["prompt"] and sample["steered"].startswith(e["text"])
    with store_only():  # each cell alone, from the cache of the two-cell request
        alone = steer_cells(run, 1, [(2, 0.5)], prompts, samples=2, max_new_tokens=6, temperature=0.7)
    assert alone == {(2, 0.5): table[(2, 0.5)]}
