"""Running sums of activations at the k read positions, for every requested layer.

One forward per side and batch, through nnsight, stopped after the last requested layer: the unembedding
never runs and nothing outside the k positions is kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from jaxtyping import Float
from torch import Tensor

from engine.corpus.windows import Batch
from engine.errors import UserError
from engine.models.loading import LoadedModel
from engine.models.pair import ModelPair, Side


def read_positions(model: LoadedModel, batch: Batch, layers: list[int]) -> Float[Tensor, "layer batch pos d_model"]:
    """Residual stream after each of `layers` at the batch's read positions (float32), on one device.

    The same trace runs here or on NDIF (`remote=model.remote`), so its block touches only envoys and
    tensors; each layer's output is indexed on its own device (sharded models spread layers over GPUs).
    """
    device = model.input_device
    ids, mask = batch.input_ids.to(device), batch.attention_mask.to(device)
    positions = batch.positions.cpu()
    rows = torch.arange(ids.shape[0]).unsqueeze(1)
    envoys = [model.nn_layer(layer) for layer in layers]
    with torch.inference_mode(), model.nn.trace(ids, attention_mask=mask, remote=model.remote) as tracer:
        grabbed = list().save()  # type: ignore[attr-defined]  # nnsight's .save()
        for envoy in envoys:
            out = envoy.output
            grabbed.append(out[rows.to(out.device), positions.to(out.device)].float())
        tracer.stop()
    return torch.stack([g.to(device) for g in grabbed])


@dataclass
class Sums:
    """Float64 running sums per side; the mean diff is mean(ft) − mean(base), which is linear, so the two
    sides need not run on the same batch at the same time (`--sequential` runs one model after the other).
    `counts` = texts summed so far for (base, ft)."""

    base: Float[Tensor, "layer pos d_model"]
    ft: Float[Tensor, "layer pos d_model"]
    base_norm: Float[Tensor, "layer pos"]
    ft_norm: Float[Tensor, "layer pos"]
    counts: list[int] = field(default_factory=lambda: [0, 0])

    @classmethod
    def zeros(cls, n_layers: int, k: int, d_model: int) -> Sums:
        z = torch.zeros((n_layers, k, d_model), dtype=torch.float64)
        zn = torch.zeros((n_layers, k), dtype=torch.float64)
        return cls(z, z.clone(), zn, zn.clone())

    def add_side(self, side: Side, acts: Float[Tensor, "layer batch pos d_model"]) -> None:
        total, norms = (self.base, self.base_norm) if side == "base" else (self.ft, self.ft_norm)
        total += acts.sum(1).double().cpu()
        norms += acts.norm(dim=-1).sum(1).double().cpu()
        self.counts[0 if side == "base" else 1] += acts.shape[1]

    def add_pair(self, pair: ModelPair, batch: Batch, layers: list[int]) -> None:
        """Both sides on one batch (joint mode); nothing is added unless both ran, so a retry after an
        out-of-memory on the finetuned side repeats the batch for both sides."""
        acts: dict[Side, Tensor] = {}
        side: Side
        for side in ("base", "ft"):
            with pair.use(side) as model:
                acts[side] = read_positions(model, batch, layers)
            check_finite(acts[side], layers, side)
        for side, side_acts in acts.items():
            self.add_side(side, side_acts)

    def mirror_base(self) -> None:
        """The finetuned side = the base side: an identical pair's sums, with no finetuned forward."""
        self.ft, self.ft_norm = self.base.clone(), self.base_norm.clone()
        self.counts[1] = self.counts[0]

    def as_tensors(self) -> dict[str, Tensor]:
        return {"base": self.base, "ft": self.ft, "base_norm": self.base_norm, "ft_norm": self.ft_norm,
                "counts": torch.tensor(self.counts, dtype=torch.int64)}

    @classmethod
    def from_tensors(cls, t: dict[str, Tensor]) -> Sums:
        return cls(t["base"], t["ft"], t["base_norm"], t["ft_norm"], t["counts"].tolist())

    def means(self) -> dict[str, Tensor]:
        nb, nf = max(self.counts[0], 1), max(self.counts[1], 1)
        mean_base = self.base / nb
        return {"mean_diff": (self.ft / nf - mean_base).float(), "mean_base": mean_base.float(),
                "base_norm": (self.base_norm / nb).float(), "ft_norm": (self.ft_norm / nf).float()}


def check_finite(acts: Tensor, layers: list[int], side: Side) -> None:
    bad = ~torch.isfinite(acts).reshape(len(layers), -1).all(dim=1)
    if bool(bad.any()):
        layer = layers[int(bad.nonzero()[0])]
        name = "finetuned" if side == "ft" else "base"
        raise UserError(f"NaN or inf in the {name} model's activations at layer {layer}",
                        "load the model in float32 (--dtype float32) or check its weights")
