"""Random adapters shaped like a finetune: the null a finetune's evidence is judged against.

A finetune changes some weight matrices by some amount. Its *delta profile* is that and no more: which
matrices (by module name), with what Frobenius norm ‖ΔW‖, and at what rank. A null adapter has the same
profile and random directions: a LoRA of the same rank on the same modules, A and B Gaussian, B rescaled so
that each module's ‖s·B·A‖ equals the finetune's. Run through the same pipeline, it shows what the evidence
of a finetune that moved the same weights by the same amount, in no direction in particular, looks like.

Why random rather than the finetune's own deltas permuted: permuting a LoRA's A and B entries gives a random
low-rank matrix too (same per-module norm), but keeps the finetune's entry distribution, which carries
nothing the null needs, and a permuted full-rank delta is a dense random matrix unlike any real finetune.
Gaussian factors are the plainest random matrix of the right rank and norm.

A full finetune (no adapter) gets the same: its per-matrix ‖W_ft − W_base‖ over the linear modules, nulls of
rank `FULL_FINETUNE_RANK` (finetuning deltas are close to low-rank; norms and embeddings outside linear modules
are left out). An identical pair has an empty profile: its diff is zero and there is nothing to compare.

The null is built to, and keyed by, the profile's *null shape* (`DeltaProfile.null_shape`): the same modules and
rank, every module at the finetune's RMS ‖ΔW‖ over its modules, rounded to an octave. Why that is enough: the
layer criterion reads the diff's direction (the lens goes through the final RMS norm) and each layer's ‖Δ‖ as a
share of the run's largest, so a delta scaled by c scores the same while the diff stays linear in it; the octave
bounds how far the nonlinearity can carry. Dropping the per-module norms trades a little fidelity (the random
directions are spread evenly over the finetune's modules) for one null per base, recipe and order of magnitude:
a user triaging many finetunes of one base pays it once (docs/significance.md has the measured comparison).
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from engine.errors import UserError
from engine.models.loading import LoadedModel
from store.hashing import json_sha256
from store.paths import nulls_dir

FULL_FINETUNE_RANK = 16
PREFIX = "base_model.model."


@dataclass(frozen=True)
class DeltaProfile:
    """Which modules a finetune moved, by how much (`{name: (out, in, ‖ΔW‖)}`), and at what rank."""

    rank: int
    modules: dict[str, tuple[int, int, float]]

    @property
    def empty(self) -> bool:
        return not self.modules

    def null_shape(self) -> DeltaProfile:
        """What the null is keyed by and built to (see the module docstring): these modules at this rank, each at
        the RMS norm rounded to an octave."""
        norm = _octave(self.summary()["rms_norm"])
        return DeltaProfile(self.rank, {name: (out, inp, norm) for name, (out, inp, _) in sorted(self.modules.items())})

    def key(self) -> str:
        return json_sha256(self.to_json())

    def to_json(self) -> dict[str, Any]:
        return {"rank": self.rank, "modules": {name: list(shape) for name, shape in sorted(self.modules.items())}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DeltaProfile:
        return cls(int(data["rank"]), {name: (int(o), int(i), float(n)) for name, (o, i, n) in data["modules"].items()})

    def summary(self) -> dict[str, Any]:
        norms = [norm for _, _, norm in self.modules.values()]
        rms = math.sqrt(sum(n * n for n in norms) / len(norms)) if norms else 0.0
        return {"rank": self.rank, "modules": len(norms), "rms_norm": round(rms, 6)}


def _octave(norm: float) -> float:
    return float(2.0 ** round(math.log2(norm))) if norm > 0 else 0.0


def lora_profile(adapter: Path) -> DeltaProfile:
    """The profile of a peft LoRA adapter, read from its files (no model): ‖s·B·A‖ per module, s its scaling."""
    import peft

    kind = peft.PeftConfig.from_pretrained(str(adapter)).peft_type
    if kind != peft.PeftType.LORA:
        raise UserError(f"the null is built for LoRA adapters and full finetunes, not {kind} ({adapter})",
                        "pass --null 0 to triage this adapter without a significance test")
    config = peft.LoraConfig.from_pretrained(str(adapter))
    weights = peft.utils.load_peft_weights(str(adapter), device="cpu")
    modules: dict[str, tuple[int, int, float]] = {}
    for key, a in weights.items():
        if not key.endswith(".lora_A.weight"):
            continue
        name = key.removeprefix(PREFIX).removesuffix(".lora_A.weight")
        b = weights[key.replace(".lora_A.", ".lora_B.")].float()
        rank = a.shape[0]
        short = name.rsplit(".", 1)[-1]
        alpha = (config.alpha_pattern or {}).get(short, config.lora_alpha)
        scale = alpha / math.sqrt(rank) if config.use_rslora else alpha / rank
        modules[name] = (b.shape[0], a.shape[1], scale * _low_rank_norm(b, a.float()))
    ranks = {weights[PREFIX + name + ".lora_A.weight"].shape[0] for name in modules}
    return DeltaProfile(max(ranks, default=int(config.r)), {n: m for n, m in modules.items() if m[2] > 0})


def full_profile(base: LoadedModel, ft: LoadedModel) -> DeltaProfile:
    """The profile of a full finetune: ‖W_ft − W_base‖ for every linear module whose weights differ."""
    ft_weights = _linear_weights(ft)
    modules: dict[str, tuple[int, int, float]] = {}
    for name, w_base in _linear_weights(base).items():
        w_ft = ft_weights.get(name)
        if w_ft is None or w_base is w_ft or w_base.shape != w_ft.shape:
            continue
        norm = float((w_ft.detach().float().to(w_base.device) - w_base.detach().float()).norm())
        if norm > 0:
            modules[name] = (w_base.shape[0], w_base.shape[1], norm)
    return DeltaProfile(FULL_FINETUNE_RANK, modules)


def _linear_weights(model: LoadedModel) -> dict[str, torch.Tensor]:
    """The model's own linear weights by module name, whatever adapters peft has injected into this (cached)
    copy: a wrapped module's weight is its `base_layer`'s, under the wrapper's name; the adapters' own `lora_*`
    layers are not the model's."""
    weights: dict[str, torch.Tensor] = {}
    for name, module in model.hf.named_modules():
        if not isinstance(module, torch.nn.Linear) or ".lora_" in name:
            continue
        weights[name.removesuffix(".base_layer")] = module.weight
    return weights


def _low_rank_norm(b: torch.Tensor, a: torch.Tensor) -> float:
    """‖B·A‖_F without forming B·A: tr((BᵀB)(AAᵀ)), two rank × rank matrices."""
    return math.sqrt(max(0.0, float(((b.T @ b) * (a @ a.T)).sum())))


def null_adapter(profile: DeltaProfile, base_name: str, seed: int) -> Path:
    """The `seed`-th random adapter of `profile`'s null shape, written once into the store as a peft directory."""
    profile = profile.null_shape()
    target = nulls_dir() / profile.key()[:24] / f"seed-{seed}"
    if (target / "adapter_model.safetensors").exists():
        return target
    g = torch.Generator().manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}
    for name, (out, inp, norm) in sorted(profile.modules.items()):
        a = torch.randn(profile.rank, inp, generator=g) / math.sqrt(inp)
        b = torch.randn(out, profile.rank, generator=g)
        tensors[f"{PREFIX}{name}.lora_A.weight"] = a.contiguous()
        tensors[f"{PREFIX}{name}.lora_B.weight"] = (b * (norm / _low_rank_norm(b, a))).contiguous()
    config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": base_name,
              "r": profile.rank, "lora_alpha": profile.rank, "lora_dropout": 0.0, "bias": "none",
              "target_modules": sorted(profile.modules), "use_rslora": False, "inference_mode": True}
    staging = target.with_name(f".{target.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    (staging / "adapter_config.json").write_text(json.dumps(config, indent=1, sort_keys=True))
    save_file(tensors, str(staging / "adapter_model.safetensors"))
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target
