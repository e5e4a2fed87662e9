"""The CLI off a terminal: periodic plain progress lines on stderr (never silent for minutes, never one line per
event), stdout left to the JSON answer; the words are the ones the TUI shows."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from tui.cli import app, engine_call, output
from tui.cli.output import JobProgress
from tui.progress_text import eta_text, steps_text


def test_eta_and_step_words() -> None:
    assert eta_text(None) == "" and eta_text(9.7) == "ETA 9s" and eta_text(80) == "ETA 1m20s"
    assert steps_text(12, 40, "calibrating layer 15: tokens", 80.0) == "calibrating layer 15: tokens 12/40, ETA 1m20s"
    assert steps_text(0, None, "started") == "started" and steps_text(3, None, "LLM call") == "LLM call 3"


def _events(total: int) -> list[dict[str, Any]]:
    return [{"type": "progress", "done": d, "total": total, "message": "steps", "eta_s": float(total - d)}
            for d in range(total + 1)]


def test_plain_lines_come_per_tenth_or_per_interval(monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    now = [-output.PLAIN_QUIET_S]
    monkeypatch.setattr(output.time, "monotonic", lambda: now[0])
    with JobProgress("training") as on_event:
        on_event({"type": "progress", "done": 0, "total": None, "message": "started"})  # the job starts: quiet
        now[0] = 0.0  # past the quiet start
        for event in _events(200):  # 201 events within one second: the first and one per tenth
            on_event(event)
        now[0] = 1.0
        for event in _events(3)[:2]:  # a new count (total changed): its first event gets a line
            on_event(event)
        now[0] = 12.0  # nothing new for 11 s: the next event gets a line although no tenth passed
        on_event({"type": "progress", "done": 1, "total": 3, "message": "steps", "eta_s": 2.0})
        on_event({"type": "partial", "text": "not progress"})
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "training: steps 0/200, ETA 3m20s"
    assert lines[1:11] == [f"training: {steps_text(20 * t, 200, 'steps', 200 - 20 * t)}" for t in range(1, 11)]
    assert lines[11:] == ["training: steps 0/3, ETA 3s", "training: steps 1/3, ETA 2s", "training: steps 1/3, ETA 2s"]


def test_organism_train_off_a_terminal_prints_lines_on_stderr_and_only_json_on_stdout(
        monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    monkeypatch.setattr(output.time, "monotonic", lambda: now[0])

    def run_sync(method: str, params: dict[str, Any], *, target: Any, on_event: Any,
                 long: bool = False) -> dict[str, Any]:
        on_event({"type": "progress", "done": 0, "total": None, "message": "started"})
        now[0] = output.PLAIN_QUIET_S  # a job long enough to report
        for event in _events(60)[1:]:
            on_event(event)
        return {"out": "/tmp/adapter", "final_loss": 0.5}

    monkeypatch.setattr(engine_call, "run_sync", run_sync)
    result = CliRunner().invoke(app, ["organism", "train", "--base", "b", "--data", "d.jsonl", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"out": "/tmp/adapter", "final_loss": 0.5}
    lines = result.stderr.splitlines()
    assert lines[0] == "training: steps 1/60, ETA 59s" and lines[-1] == "training: steps 60/60, ETA 0s"
    assert len(lines) == 11  # the first step after the quiet start (a new count), then each tenth


def test_a_job_that_fails_at_once_prints_no_progress_line(monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Bad input is refused in one stderr line: the progress of a job shorter than the quiet start stays unsaid."""
    now = [0.0]
    monkeypatch.setattr(output.time, "monotonic", lambda: now[0])
    with JobProgress("computing mean diff") as on_event:
        on_event({"type": "progress", "done": 0, "total": None, "message": "started"})
        now[0] = output.PLAIN_QUIET_S / 2
        on_event({"type": "progress", "done": 4, "total": 8, "message": "texts"})
    assert capsys.readouterr().err == ""
