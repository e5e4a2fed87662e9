"""Running sums of activations at the k read positions, for every requested layer.

One forward per side and batch, through nnsight, stopped after the last requested layer: the unembedding
never runs and nothing outside the k positions is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from engine.corpus.windows import Batch
from engine.errors import UserError
from engine.models.loading import LoadedModel
from engine.models.pair import ModelPair


def read_positions(model: LoadedModel, batch: Batch, layers: list[int]) -> Float[Tensor, "layer batch k d_model"]:
    """Residual stream after each of `layers` at the batch's read positions (float32)."""
    device = model.input_device
    ids, mask = batch.input_ids.to(device), batch.attention_mask.to(device)
    positions = batch.positions.to(device)
    rows = torch.arange(ids.shape[0], device=device).unsqueeze(1)
    with torch.inference_mode(), model.nn.trace(ids, attention_mask=mask) as tracer:
        grabbed = list().save()
        for layer in layers:
            grabbed.append(model.nn_layer(layer).output[rows, positions].float())
        tracer.stop()
    return torch.stack([g.to(device) for g in grabbed])


@dataclass
class Sums:
    """Float64 running sums; `count` texts so far. Means come out as float32."""

    diff: Float[Tensor, "layer k d_model"]
    base: Float[Tensor, "layer k d_model"]
    base_norm: Float[Tensor, "layer k"]
    ft_norm: Float[Tensor, "layer k"]
    count: int = 0

    @classmethod
    def zeros(cls, n_layers: int, k: int, d_model: int) -> Sums:
        z = torch.zeros((n_layers, k, d_model), dtype=torch.float64)
        return cls(z, z.clone(), torch.zeros((n_layers, k), dtype=torch.float64),
                   torch.zeros((n_layers, k), dtype=torch.float64))

    def add(self, pair: ModelPair, batch: Batch, layers: list[int]) -> None:
        with pair.use("base") as model:
            base = read_positions(model, batch, layers)
        with pair.use("ft") as model:
            ft = read_positions(model, batch, layers).to(base.device)
        _check_finite(base, layers, "base")
        _check_finite(ft, layers, "finetuned")
        self.diff += (ft - base).sum(1).double().cpu()
        self.base += base.sum(1).double().cpu()
        self.base_norm += base.norm(dim=-1).sum(1).double().cpu()
        self.ft_norm += ft.norm(dim=-1).sum(1).double().cpu()
        self.count += base.shape[1]

    def as_tensors(self) -> dict[str, Tensor]:
        return {"diff": self.diff, "base": self.base, "base_norm": self.base_norm, "ft_norm": self.ft_norm,
                "count": torch.tensor([self.count], dtype=torch.int64)}

    @classmethod
    def from_tensors(cls, t: dict[str, Tensor]) -> Sums:
        return cls(t["diff"], t["base"], t["base_norm"], t["ft_norm"], int(t["count"][0]))

    def means(self) -> dict[str, Tensor]:
        n = max(self.count, 1)
        return {"mean_diff": (self.diff / n).float(), "mean_base": (self.base / n).float(),
                "base_norm": (self.base_norm / n).float(), "ft_norm": (self.ft_norm / n).float()}


def _check_finite(acts: Tensor, layers: list[int], side: str) -> None:
    bad = ~torch.isfinite(acts).reshape(len(layers), -1).all(dim=1)
    if bool(bad.any()):
        layer = layers[int(bad.nonzero()[0])]
        raise UserError(f"NaN or inf in the {side} model's activations at layer {layer}",
                        "load the model in float32 (--dtype float32) or check its weights")
