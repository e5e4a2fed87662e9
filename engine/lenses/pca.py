"""PCA of the per-text differences: what varies in (ft − base) at one layer and position across texts.

The mean diff is one vector; a finetune can also move texts in different directions (a topic here, a format
there). Each text's difference at (layer, pos) is folded into running sums (count, Σd, Σd dᵀ in float64), so
only one batch's activations are held, however long the corpus; the components are the eigenvectors of the
centred second moment. The mean comes from the same passes, so the two can be compared: `mean_share` is the
part of E‖d‖² the mean alone explains. Each component is signed to point along the mean (when it has a share
of it), scaled to the texts' mean ‖d‖ and read through the finetuned model's logit lens, both signs, beside the
mean's own reading.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from engine.errors import UserError
from engine.jobs import JobContext
from engine.lenses.batching import TextBatch, encode_texts, text_batches
from engine.lenses.forward import resolve_layer
from engine.lenses.lens_cache import Computed
from engine.models.loading import LoadedModel
from engine.models.pair import ModelPair
from engine.protocol.methods import LENS_PCA, LensPca
from engine.readouts.logit_lens import logit_lens

KIND = LENS_PCA.name  # the op and its cached results (steering reads a component back by this kind)
DEFAULT_COMPONENTS = LensPca.n_components
DEFAULT_TOP = LensPca.top_k


@dataclass
class DiffMoments:
    """Running sums of the per-text differences: count, Σd, Σd dᵀ and Σ‖d‖."""

    d_model: int
    count: int = 0
    norm_total: float = 0.0
    total: Float[Tensor, " d_model"] = field(init=False)
    outer: Float[Tensor, "d_model d_model"] = field(init=False)

    def __post_init__(self) -> None:
        self.total = torch.zeros(self.d_model, dtype=torch.float64)
        self.outer = torch.zeros(self.d_model, self.d_model, dtype=torch.float64)

    def add(self, diffs: Float[Tensor, "batch d_model"]) -> None:
        d = diffs.double()
        self.count += d.shape[0]
        self.norm_total += float(d.norm(dim=-1).sum())
        self.total += d.sum(dim=0)
        self.outer += d.T @ d

    @property
    def mean(self) -> Float[Tensor, " d_model"]:
        return self.total / self.count

    def covariance(self) -> Float[Tensor, "d_model d_model"]:
        """The centred second moment (population covariance) of the differences."""
        mean = self.mean
        return self.outer / self.count - torch.outer(mean, mean)


def _at(model: LoadedModel, batch: TextBatch, layer: int, column: int) -> Float[Tensor, "batch d_model"]:
    device = model.input_device
    with torch.inference_mode(), model.nn.trace(batch.ids.to(device), attention_mask=batch.attention_mask.to(device)):
        acts = model.nn_layer(layer).output[:, column].save()
    return acts.float().cpu()


def diff_moments(pair: ModelPair, texts: list[str], layer: int, pos: int, batch_size: int, ctx: JobContext
                 ) -> DiffMoments:
    """The sums over every text that reaches position `pos` after BOS, one batch of activations at a time."""
    encoded, start = encode_texts(pair.tokenizer, texts, pos + 1)
    encoded = [e for e in encoded if len(e) > start + pos]
    if len(encoded) < 2:
        raise UserError(f"PCA needs at least two texts with {pos + 1} tokens, got {len(encoded)}",
                        "pass more or longer texts (-n), or a smaller --pos")
    sums = DiffMoments(pair.d_model)
    for batch in text_batches(encoded, start, batch_size, pair.tokenizer.pad_token_id):
        sides = {}
        for side in ("base", "ft"):
            with pair.use(side) as model:
                sides[side] = _at(model, batch, layer, start + pos)
        sums.add(sides["ft"] - sides["base"])
        ctx.progress(min(batch.lo + batch_size, len(encoded)), len(encoded), "texts")
    return sums


def components(sums: DiffMoments, n: int) -> tuple[Float[Tensor, " n"], Float[Tensor, "n d_model"]]:
    """The top `n` eigenvalues and unit eigenvectors of the covariance, each vector signed along the mean."""
    values, vectors = torch.linalg.eigh(sums.covariance())
    order = values.argsort(descending=True)[:n]
    values, vectors = values[order].clamp_min(0.0), vectors[:, order].T
    signs = torch.where(vectors @ sums.mean < 0, -1.0, 1.0).to(vectors.dtype)
    return values, vectors * signs.unsqueeze(1)


def _top_dim(unit: Float[Tensor, " d_model"]) -> list[float]:
    """[dimension, share of the squared length] of the unit vector's largest coordinate: a share near 1 means one
    residual dimension (often a massive-activation one) and a logit-lens reading that says little."""
    squared = unit.double() ** 2
    dim = int(squared.argmax())
    return [dim, round(float(squared[dim]), 4)]


def _tokens(top: Any, row: int) -> list[list[Any]]:
    return [[str(t), round(float(p), 4)] for t, p in zip(top.tokens[row].tolist(), top.probs[row].tolist(),
                                                          strict=True)]


def difference_pca(pair: ModelPair, texts: list[str], layer: int | None, pos: int,
                   n_components: int = DEFAULT_COMPONENTS, top_k: int = DEFAULT_TOP, batch_size: int = 8,
                   ctx: JobContext | None = None) -> Computed:
    """(payload, tensors): explained variance and logit-lens tokens (both signs) of the top components."""
    ctx = ctx or JobContext()
    layer = resolve_layer(layer, pair.n_layers)
    if pos < 0:
        raise UserError(f"position must be 0 or more, got {pos}", "pass --pos 0 (the first token after BOS)")
    sums = diff_moments(pair, texts, layer, pos, batch_size, ctx)
    values, vectors = components(sums, min(n_components, pair.d_model, sums.count))
    total = float(sums.covariance().trace().clamp_min(0.0))
    mean, mean_norm = sums.mean, float(sums.mean.norm())
    scale = sums.norm_total / sums.count
    n = vectors.shape[0]
    unit_mean = mean / mean_norm if mean_norm > 0 else mean
    with pair.use("ft") as model:
        top = logit_lens(model, torch.cat([vectors, -vectors, unit_mean.unsqueeze(0)]).float() * scale, top_k)
    out = [{"index": i, "explained_variance": round(float(values[i]), 6),
            "explained_variance_ratio": round(float(values[i]) / total, 5) if total > 0 else 0.0,
            "cos_with_mean": round(float(vectors[i] @ unit_mean), 4), "top_dim": _top_dim(vectors[i]),
            "tokens": _tokens(top, i), "negative_tokens": _tokens(top, n + i)} for i in range(n)]
    second_moment = float(sums.outer.trace()) / sums.count
    payload = {"layer": layer, "pos": pos, "n_texts": sums.count, "total_variance": round(total, 6),
               "mean_norm": round(mean_norm, 4), "mean_diff_norm": round(scale, 4),
               "mean_share": round(mean_norm ** 2 / second_moment, 5) if second_moment > 0 else 0.0,
               "mean_tokens": _tokens(top, 2 * n), "components": out}
    return payload, {"components": vectors.float().numpy(), "explained_variance": values.float().numpy(),
                     "mean": mean.float().numpy()}
