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
