"""Results are read by the same code as params: typed fields for their readers, the wire kept as it came."""

from __future__ import annotations

import json
from pathlib import Path
from typing import get_args

import pytest

from engine.protocol import methods
from engine.protocol.params import ParamsError, choices
from engine.protocol.results import AdlSummary, AgentRunResult, Steered
from tui.sessions.source import call_key
from tui.state import LENS_SOURCES

DATA = Path(__file__).resolve().parents[1] / "data"


def _recorded() -> list[dict[str, object]]:
    calls: list[dict[str, object]] = json.loads((DATA / "workbench_recording.json").read_text())["calls"]
    return calls


def test_every_recorded_answer_reads_as_its_methods_result_and_gives_its_wire_back() -> None:
    read = 0
    for call in _recorded():
        method = methods.BY_NAME.get(str(call["method"]))
        if method is None or not isinstance(call.get("result"), dict):
            continue
        result = method.result.from_json(call["result"])
        assert isinstance(result, method.result) and result.to_json() == call["result"]
        assert result.summary()
        read += 1
    assert read >= 10
    report = json.loads((DATA / "demo_triage.json").read_text())
    assert methods.TRIAGE_PAIR.result.from_json(report).to_json() == report


def test_typed_fields_are_what_the_panes_read() -> None:
    summary = next(c["result"] for c in _recorded() if c["method"] == methods.ADL_SUMMARY.name)
    typed = AdlSummary.from_json(summary)  # type: ignore[arg-type]
    assert (typed.run, typed.k, typed.layer_choice and typed.layer_choice.layer) == ("3f9c2a71e0b4d5c6", 5, 12)
    steered = Steered.from_json({"layer": 3, "pos": 1, "samples": [{"prompt": "p", "steered": "s", "unsteered": "u",
                                                                      "strength": 2}]})
    assert steered.samples[0].strength == 2.0 and isinstance(steered.samples[0].strength, float)
    agent = AgentRunResult.from_json({"runs": [{"mode": "adl", "grade": {"score": 4, "rationale": "close"},
                                                "result": {"description": "cakes", "tested": True}}]})
    assert agent.runs[0].grade is not None and agent.runs[0].grade.text() == "4/5 — close"
    assert agent.summary() == "cakes\ngrade 4"


def test_an_answer_of_the_wrong_shape_is_refused_in_one_line() -> None:
    with pytest.raises(ParamsError, match="'samples' must be a list"):
        Steered.from_json({"samples": {"prompt": "p"}})
    with pytest.raises(ParamsError, match="missing parameter 'strength'"):
        methods.STEER_CALIBRATE.result.from_json({"layer": 1})


def test_fixed_choices_are_checked_by_the_validator_from_their_one_definition() -> None:
    with pytest.raises(ParamsError, match=r"parameter 'side' must be 'ft' or 'base'.*pass side as one of ft, base"):
        methods.SteerGenerate.from_json({"run": "r", "side": "both"})
    with pytest.raises(ParamsError, match="parameter 'backend' must be 'local' or 'ndif'"):
        methods.LogitLens.from_json({"run": "r", "backend": "cloud"})
    assert methods.LensCausal.from_json({"mode": "direction"}).mode == "direction"
    assert LENS_SOURCES == get_args(methods.Source) == choices(methods.Source)
    assert choices(methods.Protocol | None) == ("default", "paper")


def test_a_call_recorded_with_defaults_left_out_is_the_same_call_with_them_written() -> None:
    sparse = {"run": "r", "layer": 3, "pos": 1}
    full = methods.Patchscope(run="r", layer=3, pos=1).to_json()
    assert full != sparse and call_key(methods.PATCHSCOPE.name, sparse) == call_key(methods.PATCHSCOPE.name, full)
    assert call_key("sessions.list", {"x": 1}) == ("sessions.list", '{"x":1}')
