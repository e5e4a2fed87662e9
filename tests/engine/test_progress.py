"""Every long job reports real steps with an ETA: calibration, steering, Patchscope, amplify, mining and causal
jobs on tiny models send progress whose `done` grows, and a fine count (tokens) is throttled on the wire."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from engine import jobs
from engine.adl.compute import compute_adl
from engine.adl.request import AdlRequest
from engine.jobs import JobContext
from engine.ops import load_all
from engine.triage.pair_triage import PHASES
from tests.support.engine_helpers import write_corpus


@pytest.fixture
def unthrottled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny models finish a count within one throttle interval: send every step."""
    monkeypatch.setattr(jobs, "MIN_INTERVAL_S", 0.0)


@pytest.fixture
def tiny_run(tiny_dir: Path, tiny_ft_dir: Path, tmp_path: Path) -> str:
    request = AdlRequest(base=str(tiny_dir), ft=str(tiny_ft_dir), corpus=str(write_corpus(tmp_path / "c.txt", 16)),
                         n=16, k=3, device="cpu", dtype="float32")
    return compute_adl(request).run


def _progress(method: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """The progress events of one op run as the engine runs it (through the registry, so `current()` is set)."""
    events: list[dict[str, Any]] = []
    load_all()[method].fn(params, JobContext(emit=events.append))
    return [e for e in events if e["type"] == "progress"]


def _counts(events: list[dict[str, Any]], message: str) -> list[int]:
    return [e["done"] for e in events if message in e["message"]]


def _increasing(counts: list[int]) -> bool:
    return len(counts) >= 3 and all(a < b for a, b in pairwise(counts))


def test_calibration_reports_generated_tokens_with_an_eta(tiny_run: str, unthrottled: None) -> None:
    """One count per strength round (the strengths each round probes), tokens rising within each to its total."""
    events = _progress("steer.calibrate", {"run": tiny_run, "layer": 1, "max_strength": 4.0})
    rounds = list(dict.fromkeys(e["message"] for e in events if e["message"].startswith("calibrating layer 1: ")))
    assert rounds[0] == "calibrating layer 1: strength round 1 of 3 (α 0.5): tokens", rounds
    assert [int(r.split("round ")[1].split(" ")[0]) for r in rounds] == list(range(1, len(rounds) + 1))
    for message in rounds:
        tokens = [e for e in events if e["message"] == message]
        assert _increasing([e["done"] for e in tokens]), events
        assert tokens[-1]["done"] == tokens[-1]["total"] and tokens[-1]["total"] > 1
        assert any(e["eta_s"] is not None for e in tokens[1:])


def test_steering_reports_tokens_per_decoding_step(tiny_run: str, unthrottled: None) -> None:
    events = _progress("steer.generate", {"run": tiny_run, "layer": 1, "pos": 1, "strengths": [2.0],
                                          "prompts": ["the cake is", "man hello"], "max_new_tokens": 6})
    counts = _counts(events, "steering layer 1: tokens")
    assert _increasing(counts) and counts[-1] == 4 * 6  # 2 unsteered + 2 steered rows × 6 tokens


def test_automatic_strength_calibrates_then_steers_each_with_its_own_count(tiny_run: str, unthrottled: None) -> None:
    events = _progress("steer.generate", {"run": tiny_run, "layer": 1, "pos": 0, "max_new_tokens": 4,
                                          "max_strength": 64.0, "prompts": ["the cake is"]})
    stages = list(dict.fromkeys(e["message"].split(":")[0] for e in events))
    assert stages[:1] == ["calibrating layer 1"]
    assert _increasing(_counts(events, "calibrating layer 1: strength round 1 of"))


def test_patchscope_reports_scaled_vectors_read(tiny_run: str, unthrottled: None) -> None:
    events = _progress("readout.patchscope", {"run": tiny_run, "layer": 1, "pos": 0})
    counts = _counts(events, "patchscope at layer 1")
    assert counts[0] == 0 and counts[-1] == events[-1]["total"] and len(counts) >= 2
    assert all(a < b for a, b in pairwise(counts))


def test_amplify_reports_each_column(tiny_dir: Path, tiny_ft_dir: Path) -> None:
    events = _progress("lens.amplify", {"base": str(tiny_dir), "ft": str(tiny_ft_dir), "device": "cpu",
                                        "dtype": "float32", "prompts": ["the cake is"], "factors": [0.5, 2.0],
                                        "max_new_tokens": 3})
    assert [e["done"] for e in events] == [0, 1, 2, 3, 4] and events[-1]["total"] == 4
    assert events[-2]["message"] == "columns (×2)"


def test_mining_and_causal_report_texts(tiny_dir: Path, tiny_ft_dir: Path, tmp_path: Path) -> None:
    corpus = str(write_corpus(tmp_path / "c.txt", 8))
    pair = {"base": str(tiny_dir), "ft": str(tiny_ft_dir), "device": "cpu", "dtype": "float32", "batch_size": 1}
    assert _counts(_progress("lens.mine", {**pair, "corpus": corpus, "n": 3}), "texts") == [1, 2, 3]
    causal = _progress("lens.causal", {**pair, "ft_corpus": corpus, "generic": corpus, "n": 3, "k": 2, "layer": 1})
    assert _counts(causal, "finetuning texts") == [1, 2, 3] and _counts(causal, "generic texts") == [1, 2, 3]


def test_a_fine_count_is_throttled_but_keeps_its_first_and_last_step() -> None:
    events: list[dict[str, Any]] = []
    ctx = JobContext(emit=events.append)
    for done in range(10_001):
        ctx.progress(done, 10_000, "tokens")
    assert events[0]["done"] == 0 and events[-1]["done"] == 10_000 and len(events) < 10
    coarse: list[dict[str, Any]] = []
    steps = JobContext(emit=coarse.append)
    for done in range(1, 51):
        steps.progress(done, 50, "steps")
    assert [e["done"] for e in coarse] == list(range(1, 51))


def test_the_eta_follows_the_current_count_and_stages_prefix_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter(float(t) for t in range(100))
    monkeypatch.setattr(jobs.time, "monotonic", lambda: next(clock))
    events: list[dict[str, Any]] = []
    ctx = JobContext(emit=events.append)
    with ctx.stage("calibrating layer 3"):
        for done in range(5):
            ctx.progress(done, 4, "rounds")
    assert events[-2]["eta_s"] == 1.0 and events[-1]["message"] == "calibrating layer 3: rounds"
    ctx.progress(0, 10, "steps")  # a new count: its ETA does not use the old rate
    ctx.progress(1, 10, "steps")
    assert events[-1]["eta_s"] == 9.0 and events[-1]["message"] == "steps"


def test_triage_names_the_phase_its_steps_belong_to(tiny_dir: Path, tiny_ft_dir: Path, tmp_path: Path,
                                                    unthrottled: None) -> None:
    events = _progress("triage.pair", {"base": str(tiny_dir), "ft": str(tiny_ft_dir), "corpus": "self:", "n": 8,
                                       "k": 3, "n_prompts": 1, "device": "cpu", "dtype": "float32"})
    messages = {e["message"] for e in events}
    assert {"patchscope: scaled vectors read", "calibration: strength round 1 of 3 (α 0.5): tokens",
            "steering: tokens"} <= messages, messages
    phases = [e["done"] for e in events if e["total"] == len(PHASES)]
    assert phases == sorted(phases) and phases[-1] == len(PHASES)
