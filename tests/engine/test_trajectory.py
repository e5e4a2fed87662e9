"""Trajectories: a series of finetunes of one base triaged on one base pass and one null — training checkpoints,
the weight interpolation base + t·(ft − base), hub revisions — and the bad input each refuses in one line."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from engine.adl import accumulate
from engine.adl.compute import compute_adl
from engine.adl.request import AdlRequest
from engine.adl.runs import load_run
from engine.adl.stored_runs import list_runs
from engine.errors import UserError
from engine.jobs import JobContext
from engine.models.null_adapters import lora_profile
from engine.models.scaled_adapters import scaled_adapter
from engine.models.specs import parse_spec
from engine.organisms.checkpoints import list_checkpoints
from engine.organisms.make_data import make_data, write_docs
from engine.protocol.methods import TRAJECTORIES, TRAJECTORY, Trajectory
from engine.training.organism_training import train_organism
from engine.triage.trajectory import list_trajectories, run_trajectory
from engine.triage.trajectory_steps import trajectory_steps
from store.hashing import dir_sha256
from tests.support.board_pairs import plant_adapter
from tests.support.tiny import save_tiny

ADL = {"n": 12, "k": 3, "device": "cpu", "dtype": "float32"}


@pytest.fixture(scope="module")
def lora(peaky_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return plant_adapter(peaky_base, tmp_path_factory.mktemp("traj") / "lora", 5, ["gate_proj", "down_proj"])


@pytest.fixture(scope="module")
def organism(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny organism trained 8 steps, keeping 3 checkpoints."""
    root = tmp_path_factory.mktemp("traj")
    data = write_docs(make_data("cake-sdf", 8, 0), root / "cake.txt")
    out = root / "cake"
    train_organism(str(tiny_dir), data, out, steps=8, lr=1e-2, lora_rank=4, batch_size=4, max_length=32,
                   device="cpu", checkpoints=3)
    return out


def params(base: Path, ft: str, **kwargs: Any) -> Trajectory:
    return Trajectory(base=str(base), ft=ft, null=kwargs.pop("null", 0), **ADL, **kwargs)


def test_checkpoints_are_kept_evenly_listed_in_order_and_addressed_as_specs(organism: Path, tiny_dir: Path) -> None:
    kept = list_checkpoints(organism)
    assert [step for step, _ in kept] == [2, 4, 6]
    assert all((path / "adapter_model.safetensors").is_file() for _, path in kept)
    assert parse_spec(f"{organism}@step-4").adapter == str(kept[1][1].resolve())
    assert parse_spec(f"{organism}@step-0") == parse_spec(str(tiny_dir)), "step 0 is the base"
    with pytest.raises(UserError, match=r"no checkpoint at step 5.*2, 4, 6"):
        parse_spec(f"{organism}@step-5")
    # the checkpoints leave the organism's own identity (its cached runs) as it was without them
    spec = parse_spec(str(organism))
    assert spec.identity()["adapter"] == dir_sha256(organism, skip=("checkpoints",)) != dir_sha256(organism)
    series, steps = trajectory_steps(params(tiny_dir, str(organism), checkpoints=True),
                                     AdlRequest(base=str(tiny_dir), ft=str(organism)))
    assert series == "checkpoints"
    assert [s.label for s in steps] == ["step 0 (base)", "step 2", "step 4", "step 6", "step 8 (final)"]
    assert [s.x for s in steps] == [0, 2, 4, 6, 8]


def test_a_checkpoint_trajectory_runs_each_step_once_and_keeps_the_runs_out_of_the_run_list(
        organism: Path, tiny_dir: Path) -> None:
    result = run_trajectory(params(tiny_dir, str(organism), checkpoints=True))
    rows = result["steps"]
    assert [r["x"] for r in rows] == [0, 2, 4, 6, 8] and rows[0]["identical"] and not rows[-1]["identical"]
    listed = list_trajectories()
    assert listed["trajectories"][0]["trajectory"] == result["trajectory"] == listed["latest"]["trajectory"]
    assert [r["run"] for r in listed["latest"]["steps"]] == [r["run"] for r in rows]
    runs = {r["run"] for r in list_runs()}
    assert rows[-1]["run"] in runs, "the organism itself is the user's run"
    assert not runs & {r["run"] for r in rows[1:-1]}, "checkpoint runs are the trajectory's"


def test_the_base_forward_runs_once_for_every_step(peaky_base: Path, lora: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Four interpolation steps: the base side is summed over the corpus once, and the three steps that differ
    from the base take three forwards in all (the first step's base and finetuned sides, then the other two
    steps together in one mixed-adapter batch), where four separate triages would take eight."""
    base_rows, forwards = [0], [0]
    add_side, read = accumulate.Sums.add_side, accumulate.read_positions

    def counted_add(self: accumulate.Sums, side: str, acts: torch.Tensor) -> None:
        base_rows[0] += acts.shape[1] if side == "base" else 0
        add_side(self, side, acts)  # type: ignore[arg-type]

    def counted_read(*args: Any) -> torch.Tensor:
        forwards[0] += 1
        return read(*args)

    monkeypatch.setattr(accumulate.Sums, "add_side", counted_add)
    for module in ("engine.adl.accumulate", "engine.adl.compute", "engine.adl.adapter_group"):
        monkeypatch.setattr(f"{module}.read_positions", counted_read)
    result = run_trajectory(params(peaky_base, str(lora), interpolate=[0, 0.25, 0.5, 1.0]))
    windows = load_run(result["steps"][-1]["run"]).meta["n_texts"]
    assert base_rows[0] == windows and forwards[0] == 3


def test_interpolation_t0_is_a_zero_diff_and_t1_is_the_finetunes_run(peaky_base: Path, lora: Path) -> None:
    result = run_trajectory(params(peaky_base, str(lora), interpolate=[1.0, 0.0, 0.5]))
    rows = result["steps"]
    assert [r["x"] for r in rows] == [0.0, 0.5, 1.0]
    zero, half, one = (load_run(r["run"]) for r in rows)
    assert bool((zero.mean_diff == 0).all()) and rows[0]["identical"] and rows[0]["tokens"] == []
    alone = load_run(compute_adl(AdlRequest(base=str(peaky_base), ft=str(peaky_base), adapter=str(lora),
                                            **ADL)).run)
    assert torch.equal(one.mean_diff, alone.mean_diff)
    assert 0 < float(half.mean_diff.norm()) < float(one.mean_diff.norm())
    typed = TRAJECTORY.result.from_json(result)  # the engine's answer reads typed, step by step, and gives it back
    assert typed.to_json() == result and typed.steps[0].identical and typed.steps[2].run == rows[2]["run"]
    listed = list_trajectories()
    assert TRAJECTORIES.result.from_json(listed).to_json() == listed


def test_a_scaled_adapter_scales_the_weight_delta_by_t_with_no_weight_copy(lora: Path) -> None:
    half = scaled_adapter(lora, 0.5)
    assert (half / "adapter_model.safetensors").is_symlink()
    full, scaled = lora_profile(lora), lora_profile(half)
    for name, (_, _, norm) in full.modules.items():
        assert scaled.modules[name][2] == pytest.approx(0.5 * norm, rel=1e-5)
    assert scaled_adapter(lora, 1.0) == lora and scaled_adapter(lora, 0.5) == half


def test_the_null_is_computed_once_for_every_step(peaky_base: Path, lora: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.results import significance

    calls = []
    real = significance.precompute_adapters
    monkeypatch.setattr(significance, "precompute_adapters", lambda reqs, ctx: calls.append(len(reqs)) or
                        real(reqs, ctx))
    result = run_trajectory(params(peaky_base, str(lora), interpolate=[0, 0.5, 1], null=3))
    assert calls == [3], "one null of three random adapters, shared by the steps"
    tested = [r for r in result["steps"] if not r["identical"]]
    assert len(tested) == 2 and all(isinstance(r["z"], float) for r in tested)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"interpolate": [0, 1.5]}, r"t = 1.5 is outside \[0, 1\]"),
    ({"interpolate": []}, "at least one point"),
    ({"interpolate": [0.5], "checkpoints": True}, "exactly one series, got checkpoints and interpolation"),
    ({}, "exactly one series"),
    ({"checkpoints": True}, "has no training checkpoints"),
])
def test_bad_input_is_one_line(peaky_base: Path, lora: Path, kwargs: dict[str, Any],
                               message: str) -> None:
    with pytest.raises(UserError, match=message) as caught:
        run_trajectory(params(peaky_base, str(lora), **kwargs))
    assert "\n" not in str(caught.value)


def test_interpolating_a_full_finetune_is_refused(tiny_dir: Path, tiny_ft_dir: Path) -> None:
    with pytest.raises(UserError, match="not a local LoRA adapter"):
        run_trajectory(params(tiny_dir, str(tiny_ft_dir), interpolate=[0.5]))


def fake_hub(root: Path, base: Path, revisions: dict[str, Path]) -> Path:
    """A Hugging Face cache holding `fake/tiny` at the named revisions (read offline, as from the hub)."""
    repo = root / "models--fake--tiny"
    (repo / "refs").mkdir(parents=True)
    for index, (name, model) in enumerate(revisions.items()):
        commit = f"{index + 1:040x}"
        shutil.copytree(model, repo / "snapshots" / commit)
        (repo / "refs" / name).write_text(commit)
    return root


def test_hub_revisions_are_steps_and_an_unknown_revision_is_one_line(tiny_dir: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    early = save_tiny(tmp_path / "early", "llama", seed=0)
    from tests.support.tiny import perturbed_copy

    late = perturbed_copy(tiny_dir, tmp_path / "late")
    cache = fake_hub(tmp_path / "hub", tiny_dir, {"early": early, "late": late})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    result = run_trajectory(params(tiny_dir, "fake/tiny@early,late"))
    assert [r["label"] for r in result["steps"]] == ["base", "@early", "@late"]
    assert result["steps"][1]["identical"], "the early revision has the base's weights"
    assert not result["steps"][2]["identical"]
    with pytest.raises(UserError, match="cannot load model 'fake/tiny@nope'") as caught:
        run_trajectory(params(tiny_dir, "fake/tiny@late,nope"))
    assert "\n" not in str(caught.value)
    with pytest.raises(UserError, match="distinct, non-empty revisions"):
        run_trajectory(params(tiny_dir, "fake/tiny@late,,x"))


def test_progress_names_each_step(peaky_base: Path, lora: Path) -> None:
    events: list[dict[str, Any]] = []
    run_trajectory(params(peaky_base, str(lora), interpolate=[0, 1]), JobContext(emit=events.append))
    messages = [e["message"] for e in events if e["type"] == "progress"]
    assert any(m.startswith("t = 0 (1/2)") for m in messages) and any(m.startswith("t = 1:") for m in messages)
    assert [e["step"]["label"] for e in events if e["type"] == "partial" and e.get("stage") == "trajectory"] == \
        ["t = 0", "t = 1"]
