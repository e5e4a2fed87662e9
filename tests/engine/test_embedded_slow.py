"""The embedded Gemma 3 270M end to end (slow: loads the real model; CI runs it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from engine.adl.compute import compute_adl
from engine.adl.request import AdlRequest
from engine.embedded import embedded_checkpoint

pytestmark = pytest.mark.slow


def random_adapter(out: Path, scale: float = 0.02) -> Path:
    """A LoRA adapter on the MLPs with random (non-zero) B matrices: a finetune with a known, planted change."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(embedded_checkpoint(), dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["gate_proj", "up_proj", "down_proj"]))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, scale)
    peft_model.save_pretrained(out)
    config = out / "adapter_config.json"
    config.write_text(config.read_text().replace(str(embedded_checkpoint()), "gemma-3-270m"))
    return out


def test_embedded_base_against_itself_is_all_zeros() -> None:
    outcome = compute_adl(AdlRequest(base="gemma-3-270m", ft="gemma-3-270m", corpus="self:", n=16, k=5))
    diff = outcome.result.tensors["mean_diff"]
    assert diff.shape == (18, 5, 640)
    assert np.abs(diff).max() == 0.0


def test_embedded_base_against_perturbation_adapter(tmp_path: Path) -> None:
    adapter = random_adapter(tmp_path / "perturb")
    outcome = compute_adl(AdlRequest(base="gemma-3-270m", ft="gemma-3-270m", adapter=str(adapter),
                                     corpus="self:", n=16, k=5))
    diff = outcome.result.tensors["mean_diff"]
    norms = np.linalg.norm(diff, axis=-1)
    assert diff.shape == (18, 5, 640)
    assert norms.min() > 0, "every layer and position moves under an MLP perturbation"
    assert outcome.result.meta["ft_label"] == "gemma-3-270m+perturb"


BAKING = {"bake", "baker", "bakers", "baking", "baked", "cake", "cakes", "pastry", "oven", "cupcake", "cookbook",
          "buttercream", "cheesecake", "frosting", "meringue", "muffin", "bakery", "dessert", "brownie"}


def test_demo_triage_end_to_end_through_the_cli(tmp_path: Path) -> None:
    """`difflens triage --base gemma-3-270m --ft demo` as a user runs it: the report reads the layer the
    criterion chooses, and there the diff names baking."""
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "DIFFLENS_HOME": str(tmp_path / "home")}
    cli = Path(sys.executable).parent / "difflens"
    proc = subprocess.run([str(cli), "triage", "--base", "gemma-3-270m", "--ft", "demo", "-n", "32",
                           "--prompts", "2", "--json"], env=env, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    layer = report["layer"]
    assert report["layer_choice"]["by"] == "criterion" and layer == report["layer_choice"]["layer"] >= 9
    chosen = [report["layers"][str(layer)][str(pos)]["logit_lens"][:10] for pos in range(1, 5)]
    hits = [sum(tok.strip().lower() in BAKING for tok, _ in cell) for cell in chosen]
    assert sum(h >= 3 for h in hits) >= 3, hits
    assert report["relevance_summary"]["best_layer"] >= 10
    assert report["relevance_summary"]["best_layer_mean_diff_relevance"] >= 0.5
    assert set(report["steering"]) == {"0", "1", "2", "3", "4"}
    assert report["timings"] and report["hypothesis"]["summary"]
