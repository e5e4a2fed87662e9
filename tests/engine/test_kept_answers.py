"""Kept answers (`engine/answers`): a cached report is given back whole by an engine that imports no torch, and
only while nothing it depends on has changed (params, model weights, settings, the run it was built from); the
light ops (runs, boards, organisms) answer without torch too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.answers import memo
from engine.protocol import methods, wire
from store import results
from store.db import connect
from tests.support.engine_helpers import ROOT

ENGINE = [sys.executable, "-m", "engine", "serve", "--stdio"]


def _serve(requests: list[tuple[str, dict[str, Any]]], env: dict[str, str],
           argv: list[str] = ENGINE) -> tuple[list[dict[str, Any]], str]:
    """Run a private engine, send each request in turn (following a job to its end), return the answers (a
    job's result) and the engine's stderr."""
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env, cwd=ROOT,
                                text=True)
        assert proc.stdin is not None and proc.stdout is not None
        answers = []
        try:
            for id_, (method, params) in enumerate(requests, 1):
                proc.stdin.write(json.dumps(wire.request(id_, method, params)) + "\n")
                proc.stdin.flush()
                answers.append(_answer(proc.stdout, id_))
        finally:
            proc.stdin.close()
            proc.wait(timeout=120)
        log.seek(0)
        return answers, log.read()


def _answer(stdout: Any, id_: int) -> dict[str, Any]:
    job = None
    for line in stdout:
        message = json.loads(line)
        if message.get("id") == id_:
            assert "result" in message, message
            job = message["result"].get("job")
            if job is None:
                return dict(message["result"])
        elif job is not None and message.get("params", {}).get("job") == job:
            if message["method"] == wire.JOB_DONE:
                return dict(message["params"]["result"])
            assert message["method"] != wire.JOB_FAILED, message
    raise AssertionError("the engine closed before answering")


def test_a_cached_report_comes_back_whole_from_an_engine_that_imports_no_torch(
        tiny_dir: Path, tiny_ft_dir: Path, isolated_home: Path) -> None:
    env = os.environ | {"DIFFLENS_HOME": str(isolated_home), "PYTHONPATH": str(ROOT)}
    pair = {"base": str(tiny_dir), "ft": str(tiny_ft_dir), "n": 12, "k": 3, "steer": False}
    (fresh,), _ = _serve([("triage.pair", pair)], env)
    assert not fresh["cached"]

    computed = {name: pair[name] for name in ("base", "ft", "n", "k")}
    (again, listed, opened, summary, status), imports = _serve(
        [("triage.pair", pair), ("adl.runs", {}), ("adl.compute", computed), ("adl.summary", {"run": fresh["run"]}),
         (wire.ENGINE_STATUS, {})], env, [sys.executable, "-X", "importtime", *ENGINE[1:]])
    assert again == {**fresh, "cached": True, "timings": dict.fromkeys(fresh["timings"], 0.0)}
    assert [r["run"] for r in listed["runs"]] == [fresh["run"]]  # a light op: answered before the others load
    assert opened["run"] == fresh["run"] and opened["cached"]  # kept by the triage: the workbench opens at once
    assert summary["layer_choice"] == fresh["layer_choice"]
    assert status["ops_loaded"] is False
    imported = {line.rsplit("|", 1)[-1].strip() for line in imports.splitlines() if line.startswith("import time")}
    assert "engine.server.core" in imported and not imported & {"torch", "transformers", "engine.ops.triage_ops"}

    (other,), _ = _serve([("triage.pair", {**pair, "top_k": 5})], env)  # other params: computed (from the stages)
    assert len(other["layers"]["0"]["0"]["logit_lens"]) == 5 and other["cached"]


def _run_result() -> str:
    return results.save("adl", {"test": "kept answers"}, {"mean_diff": np.zeros((2, 3, 4), np.float32)}, {}).key


def test_an_answer_is_recalled_only_while_its_run_is_there_and_complete() -> None:
    run = _run_result()
    ticket = memo.ticket("adl.summary", {"run": run[:10]})
    assert ticket is not None
    memo.keep(ticket, {"run": run, "layer_choice": None})  # a part is missing: not kept
    assert memo.recall(ticket) is None
    answer = {"run": run, "layer_choice": {"layer": 1}}
    memo.keep(ticket, answer)
    assert memo.recall(ticket) == answer
    results.file_for(run).unlink()
    assert memo.recall(ticket) is None


def test_the_key_follows_settings_that_change_answers_and_ignores_those_that_cannot(
        monkeypatch: pytest.MonkeyPatch) -> None:
    run = _run_result()
    params = {"run": run, "layer": 1, "pos": 0}
    first = memo.ticket("readout.patchscope", params)
    assert first is not None
    monkeypatch.setenv("DIFFLENS_RUNTIME_DIR", "/elsewhere")  # where the engine listens
    monkeypatch.setenv("DIFFLENS_LOG_LEVEL", "DEBUG")
    assert memo.ticket("readout.patchscope", params).key == first.key  # type: ignore[union-attr]
    monkeypatch.setenv("DIFFLENS_JUDGE", "openai:gpt-judge")  # another judge grades the scales
    assert memo.ticket("readout.patchscope", params).key != first.key  # type: ignore[union-attr]


def test_a_retrained_adapter_is_another_answer(tiny_dir: Path, tmp_path: Path) -> None:
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    params = {"base": str(tiny_dir), "ft": str(tiny_dir), "adapter": str(adapter)}
    before = memo.ticket("triage.pair", params)
    (adapter / "adapter_model.safetensors").write_bytes(b"new weights")
    after = memo.ticket("triage.pair", params)
    assert before is not None and after is not None and before.key != after.key


@pytest.mark.parametrize(("method", "params"), [
    ("adl.summary", {"run": "adl-"}),                       # a prefix of more than one run
    ("adl.summary", {"run": "adl-nosuchrun"}),
    ("triage.pair", {"base": "/no/such/model", "ft": "x"}),  # the op says what is wrong
    ("triage.pair", {"base": 3}),                           # params that do not parse
    ("readout.logit_lens", {"run": "adl-x", "head": "/a/tuned/lens.pt"}),
    ("agent.run", {"run": "adl-x"}),                        # not a kept method
])
def test_requests_that_are_not_kept(method: str, params: dict[str, Any]) -> None:
    _run_result()
    results.save("adl", {"test": "another"}, {"x": np.zeros(1, np.float32)}, {})
    assert memo.ticket(method, params) is None


def test_a_damaged_kept_answer_is_a_miss() -> None:
    run = _run_result()
    ticket = memo.ticket("adl.summary", {"run": run})
    assert ticket is not None
    memo.keep(ticket, {"run": run, "layer_choice": {"layer": 1}})
    connect()["answers"].update(ticket.key, {"answer": "{not json"})
    assert memo.recall(ticket) is None


def test_keeping_an_answer_ahead_never_fails_the_caller() -> None:
    run = _run_result()

    def needs_a_model() -> dict[str, Any]:
        raise RuntimeError("a model is needed here")

    memo.prefill(methods.ADL_SUMMARY, {"run": run}, needs_a_model)
    ticket = memo.ticket("adl.summary", {"run": run})
    assert ticket is not None and memo.recall(ticket) is None
    memo.prefill(methods.ADL_SUMMARY, {"run": run}, lambda: {"run": run, "layer_choice": {"layer": 0}})
    assert memo.recall(ticket) == {"run": run, "layer_choice": {"layer": 0}}
