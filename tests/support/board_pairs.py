"""Boards of planted pairs in tests: random LoRA adapters on a tiny base, the pairs they make, fast settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

FAST = {"n": 8, "k": 3, "steer": False, "device": "cpu", "dtype": "float32", "null": 2}


def plant_adapter(base: Path, out: Path, seed: int, targets: list[str]) -> Path:
    """A LoRA adapter on `base` whose B matrices are random (so it changes the model)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base), LoraConfig(r=2, target_modules=targets))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(0.3 * torch.randn(p.shape, generator=generator))
    model.save_pretrained(out)
    return out


def three_pairs(p: dict[str, str]) -> list[dict[str, Any]]:
    return [{"name": "same", "base": p["base"], "ft": p["base"]},
            {"name": "mlp", "base": p["base"], "ft": p["base"], "adapter": p["mlp"]},
            {"name": "attn", "base": p["base"], "ft": p["base"], "adapter": p["attn"]}]
