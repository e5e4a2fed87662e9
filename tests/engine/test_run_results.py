"""ADL step 2 on a cached run: cached grids, batched steering, the triage report and the agent environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.adl.compute import compute_adl
from engine.adl.request import AdlRequest
from engine.adl.rescale_norm import layer_norm
from engine.adl.runs import load_run
from engine.agent.protocols import PROTOCOLS, Sampling
from engine.agent.run_environment import RunEnvironment, SteeringSettings
from engine.errors import UserError
from engine.jobs import JobContext, store_only
from engine.ops.readout_ops import logit_lens_cell, logit_lens_grid
from engine.protocol.methods import TriageSettings
from engine.readouts.logit_lens import logit_lens
from engine.readouts.patchscope import patchscope
from engine.results.calibrated_steering import CalibrationSettings, steer, steer_cells, steering_vectors
from engine.results.readout_cells import lens_grid, patchscope_cells
from engine.steering.generate import generate_steered
from engine.triage.pair_triage import triage
from store import results
from tests.support.engine_helpers import ROOT
from tests.support.tiny import perturbed_copy

PROMPTS = ["w1 w2 w3", "the cake", "a plan of"]


@pytest.fixture()
def run_id(tiny_dir: Path, tiny_ft_dir: Path) -> str:
    return compute_adl(AdlRequest(base=str(tiny_dir), ft=str(tiny_ft_dir), corpus="self:", n=16, k=3)).run


def test_lens_grid_is_the_logit_lens_of_every_cell_and_is_cached(run_id: str) -> None:
    run = load_run(run_id)
    grid = lens_grid(run, "diff", top_k=7)
    with run.pair().use("ft") as model:
        direct = logit_lens(model, run.mean_diff, top_k=7)
    assert grid.ids.shape == (4, 3, 7) and grid.meta["head"] == "ft"
    assert np.array_equal(grid.ids, direct.ids.numpy())
    assert grid.pairs(2, 1)[0][0] == direct.tokens[2, 1, 0]
    assert results.lookup("logitlens", {"run": run_id, "source": "diff", "top_k": 7, "head": "ft"}) is not None
    ft = lens_grid(run, "ft", top_k=7)
    with run.pair().use("ft") as model:
        assert np.array_equal(ft.ids, logit_lens(model, run.mean_base + run.mean_diff, top_k=7).ids.numpy())
    assert lens_grid(run, "base", top_k=7).meta["head"] == "base"


def test_diff_lens_through_the_finetuned_head_by_hand_and_base_head_cached_apart(tiny_dir: Path,
                                                                                 tmp_path: Path) -> None:
    ft_dir = perturbed_copy(tiny_dir, tmp_path / "ft-head", parts=("mlp", "model.norm", "lm_head"))
    run_id = compute_adl(AdlRequest(base=str(tiny_dir), ft=str(ft_dir), corpus="self:", n=8, k=3)).run
    run = load_run(run_id)
    grid = lens_grid(run, "diff", top_k=5)
    with run.pair().use("ft") as ft, torch.no_grad():
        probs = torch.softmax(ft.hf.lm_head(ft.hf.model.norm(run.mean_diff)), dim=-1)
    top_p, top_i = probs.topk(5, dim=-1)
    assert np.array_equal(grid.ids, top_i.numpy())
    np.testing.assert_allclose(grid.probs, top_p.numpy(), rtol=1e-5, atol=1e-6)
    base = lens_grid(run, "diff", top_k=5, head="base")
    assert base.meta["head"] == "base" and not np.array_equal(base.probs, grid.probs)
    with run.pair().use("base") as model:
        assert np.array_equal(base.ids, logit_lens(model, run.mean_diff, top_k=5).ids.numpy())
    for head in ("ft", "base"):
        assert results.lookup("logitlens", {"run": run_id, "source": "diff", "top_k": 5, "head": head}) is not None
    with pytest.raises(UserError, match="unknown logit-lens head 'chat'"):
        lens_grid(run, "diff", head="chat")  # type: ignore[arg-type]


def test_lens_ops_take_a_head_and_say_which_one_read(run_id: str) -> None:
    one = logit_lens_cell({"run": run_id, "layer": 1, "pos": 0}, JobContext())
    base = logit_lens_cell({"run": run_id, "layer": 1, "pos": 0, "source": "base"}, JobContext())
    grid = logit_lens_grid({"run": run_id, "layers": [1], "head": "base"}, JobContext())
    assert (one["head"], base["head"], grid["head"]) == ("ft", "base", "base")
    with pytest.raises(UserError, match="parameter 'head' must be 'ft' or 'base', got 'lm'"):
        logit_lens_grid({"run": run_id, "head": "lm"}, JobContext())


def test_patchscope_cells_keep_every_scale_and_rescale_without_position_0(run_id: str) -> None:
    run = load_run(run_id)
    grid = patchscope_cells(run, 2, [0, 1, 2], scales=[0.5, 1.0, 2.0, -1.0], top_k=5)
    assert grid.ids.shape == (3, 4, 5) and grid.meta["scales"] == [-1.0, 0.5, 1.0, 2.0]
    assert grid.meta["best_scale"][0] in (-1.0, 0.5, 1.0, 2.0) and len(grid.meta["prompts"]) == 3
    assert set(grid.meta["best_by_sign"][0]) == {"+", "-"}
    with pytest.raises(UserError, match="position 7 out of range"):
        patchscope_cells(run, 2, [7])
    norm = float(run.ft_norm[run.layer_index(2), 1:].mean())
    assert layer_norm(run, 2) == pytest.approx(norm) and norm != pytest.approx(float(run.ft_norm[2].mean()))
    with run.pair().use("ft") as model:
        want = patchscope(model, run.mean_diff[run.layer_index(2), [0, 1, 2]], [2, 2, 2], target_norms=[norm] * 3,
                          scales=[-1.0, 0.5, 1.0, 2.0], top_k=5)
    assert np.array_equal(grid.ids, want.top.ids.numpy())


def test_steer_cells_batches_positions_and_equals_one_cell_at_a_time(run_id: str) -> None:
    run = load_run(run_id)
    table = steer_cells(run, 1, [(0, 0.5), (2, 1.5)], PROMPTS, max_new_tokens=6)
    vectors = steering_vectors(run, 1, [0, 2])
    with run.pair().use("ft") as model:
        alone = generate_steered(model, vectors[1], 1, PROMPTS, [0.0, 1.5], max_new_tokens=6)
    assert [s["steered"] for s in table[(2, 1.5)]] == [s.text for s in alone if s.strength == 1.5]
    assert [s["unsteered"] for s in table[(2, 1.5)]] == [s.text for s in alone if s.strength == 0]
    assert steer(run, 1, 0, [0.5], PROMPTS, max_new_tokens=6) == table[(0, 0.5)]


def test_zero_diff_cannot_steer(tiny_dir: Path) -> None:
    run = load_run(compute_adl(AdlRequest(base=str(tiny_dir), ft=str(tiny_dir), n=4, k=2)).run)
    with pytest.raises(UserError, match="nothing to steer with"):
        steering_vectors(run, 1, [0])


def test_triage_report_has_the_documented_keys_and_is_cached(tiny_dir: Path, tiny_ft_dir: Path) -> None:
    request = AdlRequest(base=str(tiny_dir), ft=str(tiny_ft_dir), corpus="self:", n=12, k=3)
    short = SteeringSettings(max_new_tokens=5)
    report = triage(request, TriageSettings(n_prompts=2), steering_samples=short)
    assert {"run", "layers", "steering", "hypothesis", "timings"} <= set(report)
    layer = report["layer"]
    assert layer == report["layer_choice"]["layer"] and set(report["layers"]) == {"0", "1", "2", "3"}
    cell = report["layers"][str(layer)]["1"]
    assert {"norm", "logit_lens", "patchscope", "relevance"} <= set(cell)
    assert cell["patchscope"]["scales"] and isinstance(cell["logit_lens"][0][1], float)
    assert all(row["1"]["patchscope"] is None for lay, row in report["layers"].items() if lay != str(layer))
    assert set(report["steering"]) == {"0", "1", "2"}
    for entry in report["steering"].values():
        assert entry["strength"] >= 0
        assert all({"prompt", "steered", "unsteered"} <= set(p) for p in entry["prompts"])
    assert report["hypothesis"]["label"].startswith("keyword hypothesis")
    with store_only():  # a full cache hit asks for no model: any model access raises NeedsModels
        again = triage(request, TriageSettings(n_prompts=2), steering_samples=short)
    assert again["cached"] and again["steering"] == report["steering"]
    assert again["layers"] == report["layers"] and again["hypothesis"] == report["hypothesis"]


_CACHED_TRIAGE = """
import json, sys
from engine.adl.request import AdlRequest
from engine.agent.run_environment import SteeringSettings
from engine.protocol.methods import TriageSettings
from engine.triage.pair_triage import triage
from engine.jobs import store_only
from engine import ops

ops.load_all()
base, ft = sys.argv[1:3]
with store_only():
    report = triage(AdlRequest(base=base, ft=ft, corpus="self:", n=12, k=3),
                    TriageSettings(n_prompts=2), steering_samples=SteeringSettings(max_new_tokens=5))
print(json.dumps({"cached": report["cached"], "imported": sorted(m for m in ("transformers", "nnsight", "peft")
                                                                   if m in sys.modules)}))
"""


def test_a_cached_triage_in_a_fresh_engine_process_imports_no_model_library(tiny_dir: Path, tiny_ft_dir: Path,
                                                                            isolated_home: Path) -> None:
    """What makes a cached report fast: the engine's ops and every stage's cache lookup run without
    transformers, nnsight or peft (imported only when a model is loaded)."""
    triage(AdlRequest(base=str(tiny_dir), ft=str(tiny_ft_dir), corpus="self:", n=12, k=3),
           TriageSettings(n_prompts=2), steering_samples=SteeringSettings(max_new_tokens=5))
    done = subprocess.run([sys.executable, "-c", _CACHED_TRIAGE, str(tiny_dir), str(tiny_ft_dir)],
                          env=os.environ | {"DIFFLENS_HOME": str(isolated_home), "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.splitlines()[-1]) == {"cached": True, "imported": []}


def test_environment_serves_the_agent_tools(run_id: str) -> None:
    run = load_run(run_id)
    short = replace(PROTOCOLS["default"], ask_model=Sampling(4, 0.8))  # the tiny model has 128 positions
    env = RunEnvironment(run, 2, [0, 1, 2], SteeringSettings(prompts=PROMPTS[:2], max_new_tokens=4),
                         CalibrationSettings(grid_size=3, n_prompts=1, samples=1, max_new_tokens=4), short)
    overview = env.overview()
    assert overview["layer"] == 2 and set(overview["logit_lens"]) == {"0", "1", "2"}
    answers = env.ask_model(["w1 w2"])["answers"]
    assert set(answers[0]) == {"prompt", "base", "finetuned"}
    steered = env.generate_steered(2, 1, ["w3"], 1.0)
    assert steered["strength"] == 1.0 and len(steered["samples"]) == 1
    from engine.agent.environment import ToolError

    with pytest.raises(ToolError):
        env.logitlens_details(9, [0], 5)


def test_vectors_are_scaled_to_the_layer_norm(run_id: str) -> None:
    run = load_run(run_id)
    v = steering_vectors(run, 3, [1])
    assert torch.isclose(v.norm(), run.ft_norm[3, 1:].mean(), rtol=1e-4)


def test_the_lenses_are_budgeted_tools_for_both_agents_alike(run_id: str) -> None:
    from types import SimpleNamespace

    from engine.agent.loop import AgentLoop
    from engine.agent.recorded import RecordedEnvironment
    from engine.agent.transcript import Transcript
    from engine.ops.agent_ops import lens_tools_for

    env = RunEnvironment(load_run(run_id), 2, [0, 1, 2])
    tools = lens_tools_for(env)
    assert {t.name for t in tools} >= {"token_divergence", "diff_mining"}
    llm = SimpleNamespace(supports_tools=True, label="stub")
    adl = AgentLoop(env, llm, Transcript(), mode="adl", extra_tools=tools)  # type: ignore[arg-type]
    baseline = AgentLoop(env, llm, Transcript(), mode="baseline", extra_tools=tools)  # type: ignore[arg-type]
    assert "token_divergence" in adl.tools and "token_divergence" in baseline.tools
    result = adl.tools["token_divergence"].run(env, {"texts": ["w1 w2 w3 w4", "the cake"]})
    assert len(result["texts"]) == 2 and result["mean_kl"] > 0
    assert adl.tools["token_divergence"].cost({"texts": ["a", "b"]}) == 2
    assert lens_tools_for(RecordedEnvironment.__new__(RecordedEnvironment)) == []


def test_steering_similarity_is_cached_by_the_texts(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cached report embeds nothing: the similarity of the same steered/unsteered/training texts is stored."""
    from engine.results.known_finetune import KnownFinetune
    from engine.steering.similarity import SteeringSimilarity
    from engine.triage import pair_triage as triage_module

    calls: list[int] = []

    def fake(steered: list[str], unsteered: list[str], references: list[str]) -> SteeringSimilarity:
        calls.append(1)
        return SteeringSimilarity(steered=0.5, unsteered=0.25)

    monkeypatch.setattr(triage_module, "steering_similarity", fake)
    steering = {"1": {"prompts": [{"prompt": "p", "steered": "cake", "unsteered": "plain"}]}}
    known = KnownFinetune("baking", "sdf", ["a cake text"])
    first = triage_module._similarity(steering, known)
    assert triage_module._similarity(steering, known) == first == {"steered": 0.5, "unsteered": 0.25, "gain": 0.25}
    assert len(calls) == 1
    other = {"1": {"prompts": [{"prompt": "p", "steered": "bread", "unsteered": "plain"}]}}
    triage_module._similarity(other, known)
    assert len(calls) == 2
