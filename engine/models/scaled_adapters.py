"""A LoRA adapter with its weight delta scaled by t: the interpolation base + t·(ft − base), with no weight copy.

peft adds `scaling · B·A` with scaling = lora_alpha / r (or / √r with rsLoRA), so multiplying every alpha by t
scales the delta by exactly t. The scaled adapter is a folder in the store holding the changed config and links
to the original's weight file and organism card (so a report still knows what the finetune was taught).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

from engine.errors import UserError
from engine.organisms.checkpoints import CHECKPOINTS_DIR
from store.hashing import dir_sha256
from store.paths import interpolations_dir

LINKED = ("adapter_model.safetensors", "adapter_model.bin", "organism.json")
UNSCALABLE = {"use_dora": "a DoRA adapter", "modules_to_save": "an adapter with fully trained modules",
              "trainable_token_indices": "an adapter with trained token embeddings"}


def check_fraction(t: float) -> None:
    if not (math.isfinite(t) and 0.0 <= t <= 1.0):
        raise UserError(f"interpolation point t = {t} is outside [0, 1]",
                        "pass points between 0 (the base) and 1 (the finetune), e.g. --interpolate 0,0.5,1")


def scalable_config(adapter: Path) -> dict[str, Any]:
    """The adapter's config, refused unless scaling its alphas scales its delta linearly (plain LoRA)."""
    config = json.loads((adapter / "adapter_config.json").read_text())
    if config.get("peft_type") != "LORA":
        raise UserError(f"{adapter.name} is a {config.get('peft_type')} adapter; interpolation scales LoRA adapters",
                        "interpolate a LoRA finetune, or compare checkpoints or revisions instead")
    for key, what in UNSCALABLE.items():
        if config.get(key):
            raise UserError(f"{adapter.name} is {what}, whose delta does not scale with lora_alpha",
                            "interpolate a plain LoRA finetune, or compare checkpoints instead")
    return config


def scaled_adapter(adapter: Path, t: float) -> Path:
    """`adapter` with its delta × t, written once into the store (t = 1 is `adapter` itself)."""
    check_fraction(t)
    config = scalable_config(adapter)
    if t == 1.0:
        return adapter
    target = interpolations_dir() / dir_sha256(adapter, skip=(CHECKPOINTS_DIR,))[:24] / f"t-{t:.4f}"
    if (target / "adapter_config.json").exists():
        return target
    config["lora_alpha"] = config["lora_alpha"] * t
    config["alpha_pattern"] = {name: alpha * t for name, alpha in (config.get("alpha_pattern") or {}).items()}
    staging = target.with_name(f".{target.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in LINKED:
        if (adapter / name).exists():
            os.symlink((adapter / name).resolve(), staging / name)
    (staging / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target
