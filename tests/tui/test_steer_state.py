"""Steering memory as frozen state: the pure transitions the workbench's steering controller applies (which α a
cell gets, which samples come back with no job, which run's events count, what calibration changes)."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, replace
from typing import Any

import pytest

from engine.protocol.results import Steered
from tui.sessions.view import recall_recorded
from tui.state import (
    HeatState,
    SteerMemory,
    SteerState,
    add_prompt,
    calibration_done,
    calibration_started,
    calibration_stopped,
    drop_prompt,
    follow,
    move_cursor,
    needs_calibration,
    press_steer,
    select_prompt,
    set_alpha,
    set_prompt,
    steer_finished,
    steer_streamed,
    use_calibrated,
)

# rel_norm 0.5 everywhere: the norm α is √2^round(log_√2 0.5) = 0.5
HEAT = HeatState(layers=(3, 6, 9), k=3, metrics={"rel_norm": ((0.5,) * 3,) * 3}, row=1, pos=1)


def result(*prompts: str, steered: str = "cake") -> Steered:
    return Steered.from_json(
        {"samples": [{"prompt": p, "steered": f"{steered} {p}", "unsteered": p} for p in prompts]})


def steered_once(memory: SteerMemory, steer: SteerState, answer: dict[str, Any]
                 ) -> tuple[SteerMemory, SteerState]:
    memory, steer, job = press_steer(memory, steer, HEAT)
    assert job
    return steer_finished(memory, steer, memory.tag, answer)


def test_a_cell_takes_the_users_alpha_else_its_calibrated_one_else_the_norm_default() -> None:
    memory = SteerMemory(calibrated={(6, 2): 0.25})
    memory, steer = follow(memory, SteerState(), HEAT)
    assert (steer.layer, steer.pos, steer.alpha, steer.alpha_from) == (6, 1, 0.5, "norm")
    steer = set_alpha(steer, 3.0)
    right = move_cursor(HEAT, 0, 1)
    memory, steer = follow(memory, steer, right)
    assert (steer.alpha, steer.alpha_from, steer.calibrated) == (0.25, "calibrated", 0.25)
    assert memory.chosen == {(6, 1): 3.0}  # the α picked on the cell it left is kept
    memory, steer = follow(memory, steer, HEAT)
    assert (steer.alpha, steer.alpha_from) == (3.0, "you")


def test_steering_asks_once_then_paints_the_samples_again_with_no_job() -> None:
    memory, steer = follow(SteerMemory(), SteerState(), HEAT)
    memory, steer, job = press_steer(memory, steer, HEAT)
    assert job and memory.tag == 1 and memory.asked == (6, 1, 0.5, ())
    assert steer.streaming and "steering L6 p1 at α 0.5" in steer.status
    memory, steer = steer_finished(memory, steer, 1, result("a", "b"))
    assert [r.steered for r in steer.rows] == ["cake a", "cake b"] and steer.prompts == ("a", "b")
    # again with the same prompts (now the list's): the remembered samples, no job, a newer tag
    again, painted, job = press_steer(memory, steer, HEAT)
    assert not job and again.tag == 2 and painted.status == "shown before at α 0.5" and painted.rows == steer.rows
    # moving away and back paints them as well
    memory, away = follow(memory, steer, move_cursor(HEAT, 1, 0))
    assert away.status == "cell changed: r steers at L9 p1"
    memory, back = follow(memory, away, HEAT)
    assert back.status == "shown before at α 0.5" and back.rows == steer.rows


def test_a_replaced_runs_late_events_change_nothing() -> None:
    memory, steer = follow(SteerMemory(), SteerState(prompts=("a",)), HEAT)
    memory, steer, _ = press_steer(memory, steer, HEAT)
    old = memory.tag
    memory, steer, _ = press_steer(memory, set_alpha(steer, 1.0), HEAT)
    event = {"line": 0, "column": "steered", "text": "old run"}
    assert steer_streamed(memory, steer, old, event) == steer
    assert steer_finished(memory, steer, old, result("a")) == (memory, steer)
    streamed = steer_streamed(memory, steer, memory.tag, {**event, "text": "new run"})
    assert streamed.rows[0].steered == "new run"
    stopped_memory, stopped = steer_finished(memory, streamed, memory.tag, None)
    assert stopped_memory == memory and not stopped.streaming and "steering stopped" in stopped.status


def test_calibration_comes_first_replaces_the_users_alpha_and_only_its_own_cell_is_cleared() -> None:
    memory, steer = follow(SteerMemory(), SteerState(), HEAT)
    assert needs_calibration(memory, steer, HEAT)
    memory, steer = calibration_started(memory, steer, (6, 1))
    assert memory.calibrating == (6, 1) and "calibrating α at L6 p1" in steer.status
    assert not needs_calibration(memory, steer, HEAT)  # r meanwhile steers at the α on screen
    memory = replace(memory, chosen={(6, 1): 4.0, (3, 1): 2.0})
    other = calibration_done(memory, (3, 1), 0.7)
    assert other.calibrating == (6, 1) and other.chosen == {(6, 1): 4.0}
    memory = calibration_done(memory, (6, 1), 0.125)
    assert memory.calibrating is None and memory.calibrated == {(6, 1): 0.125} and memory.chosen == {(3, 1): 2.0}
    memory, steer = follow(memory, steer, HEAT)
    assert (steer.alpha, steer.alpha_from) == (0.125, "calibrated") and not needs_calibration(memory, steer, HEAT)
    assert use_calibrated(set_alpha(steer, 9.0)) == steer


def test_a_failed_calibration_says_so_only_for_the_one_running() -> None:
    memory, steer = calibration_started(SteerMemory(), SteerState(), (6, 1))
    assert calibration_stopped(memory, steer, (3, 0)) == (memory, steer)
    memory, steer = calibration_stopped(memory, steer, (6, 1))
    assert memory.calibrating is None and "calibration did not finish" in steer.status


def test_transitions_leave_the_memory_they_were_given_as_it_was() -> None:
    memory, steer = follow(SteerMemory(), SteerState(), HEAT)
    before = memory
    later, _ = steered_once(memory, steer, result("a"))
    later = calibration_done(later, (6, 1), 0.3)
    assert memory == before == SteerMemory() and later.shown and later.calibrated
    with pytest.raises(FrozenInstanceError):
        memory.tag = 3  # type: ignore[misc]


def test_prompt_edits() -> None:
    steer = add_prompt(SteerState(prompts=("a", "b")), "c")
    assert steer.prompts == ("a", "b", "c") and steer.selected == 2
    steer = set_prompt(steer, 0, "A")
    assert steer.prompts == ("A", "b", "c")
    steer = drop_prompt(steer)
    assert steer.prompts == ("A", "b") and steer.selected == 1
    assert select_prompt(steer, 5).selected == 1 and select_prompt(steer, -5).selected == 0
    assert drop_prompt(SteerState()) == SteerState() and select_prompt(SteerState(), 1) == SteerState()


def test_a_sessions_recorded_answers_are_recalled_by_cell_and_alpha() -> None:
    actions: list[dict[str, Any]] = [
        {"method": "steer.calibrate", "params": {"run": "r", "layer": 6, "pos": 1}, "result": {"strength": 0.25}},
        {"method": "steer.generate", "params": {"run": "r", "layer": 6, "pos": 2, "strengths": [0.70711]},
         "result": result("p").to_json()},
        {"method": "steer.generate", "params": {"run": "r", "layer": 6, "pos": 0, "strengths": [1.0]}, "result": None},
    ]
    shown_steer = SteerState(layer=9, pos=1, alpha=2.0, alpha_from="you")
    memory = recall_recorded(SteerMemory(), actions, shown_steer)
    assert memory.calibrated == {(6, 1): 0.25}
    assert memory.chosen == {(6, 2): 0.7071, (9, 1): 2.0}
    assert set(memory.shown) == {(6, 2, 0.7071, ()), (6, 2, 0.7071, ("p",))}
