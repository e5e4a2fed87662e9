"""Patchscope: let the model say what a vector means by patching it into an identity prompt.

The vector (rescaled to the layer's mean activation norm, times a scale) replaces the residual at the
last (`?`) position of `man -> man\\n1135 -> 1135\\nhello -> hello\\n?` after its own layer; the
next-token distribution then names what the vector stands for. All cells × scales run in one batched
forward (chunked only to bound memory); every scale's top tokens are kept.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from engine.errors import Ungraded
from engine.models.loading import LoadedModel
from engine.ndif.limits import RequestLimits
from engine.readouts.filters import is_trivial_token, normalise_token
from engine.readouts.topk import TopTokens, concat, decode_ids

IDENTITY_PROMPT = "man -> man\n1135 -> 1135\nhello -> hello\n?"
# The reference grid: 0.5–2.0 in steps of 0.1, then 3, 4, 5, 10, 20, then 20→200 in 10 steps (20 once).
DEFAULT_SCALES: tuple[float, ...] = tuple(
    sorted({round(0.5 + 0.1 * i, 1) for i in range(16)} | {3.0, 4.0, 5.0, 10.0, 20.0}
           | {round(float(x), 1) for x in torch.linspace(20.0, 200.0, 10).tolist()}))

ScaleGrader = Callable[[list[tuple[float, list[str]]]], tuple[float, list[str]]]
"""Picks the best scale of one cell from `[(scale, tokens), ...]`; returns (scale, selected tokens), or raises
`Ungraded` when it has no usable answer."""


@dataclass
class PatchscopeResult:
    """Every scale's top tokens per cell, and the chosen scale with its coherent "selected tokens"."""

    scales: tuple[float, ...]
    layers: list[int]
    top: TopTokens                      # grid [cell, scale]
    stability: Float[Tensor, "cell scale"]
    best_scale: list[float]
    selected_tokens: list[list[str]]
    chosen_by: list[str]                # "llm", "stability" or "ungraded: <why>", per cell

    def best(self, cell: int) -> TopTokens:
        """Top tokens of `cell` at its chosen scale."""
        return self.top[cell, self.scales.index(self.best_scale[cell])]


def patchscope(model: LoadedModel, vectors: Float[Tensor, "cell d_model"], layers: Sequence[int],
               target_norms: Float[Tensor, " cell"] | Sequence[float] | None = None,
               scales: Sequence[float] = DEFAULT_SCALES, prompt: str = IDENTITY_PROMPT, top_k: int = 20,
               grader: ScaleGrader | None = None, max_rows: int = 256) -> PatchscopeResult:
    """Patchscope of each vector at its own layer (`layers[i]` = the decoder layer vector i was read after).

    `target_norms[i]` is the mean activation norm at that layer: each vector is rescaled to it before the
    scale is applied (None: use the vector as is). One forward carries all cells × scales (plus one clean
    row for the offline criterion); `max_rows` splits it only when memory demands.
    """
    scales = tuple(sorted(float(s) for s in scales))
    n_cells = vectors.shape[0]
    if len(layers) != n_cells:
        raise ValueError(f"{n_cells} vectors but {len(layers)} layers")
    if any(not 0 <= layer < model.n_layers for layer in layers):
        raise ValueError(f"layers must lie in [0, {model.n_layers})")
    direction = vectors.float()
    if target_norms is not None:
        norms = torch.as_tensor(target_norms, dtype=torch.float32).reshape(n_cells, 1)
        direction = direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-8) * norms
    scale_t = torch.tensor(scales, dtype=torch.float32)
    patches = (direction[:, None, :] * scale_t[None, :, None]).reshape(-1, model.d_model)
    row_layers = torch.tensor(layers).repeat_interleave(len(scales))
    # Row 0 is the clean (unpatched) prompt: its answer is what "the identity prompt alone" says.
    patches = torch.cat([torch.zeros(1, model.d_model), patches])
    row_layers = torch.cat([torch.tensor([-1]), row_layers])

    prompt_ids = model.tokenizer(prompt, return_tensors="pt")["input_ids"].to(model.input_device)
    if model.remote:
        max_rows = RequestLimits.current().rows_per_request(4 * (model.d_model + 2 * top_k), max_rows)
    parts = [_patched_top(model, prompt_ids, patches[s:s + max_rows], row_layers[s:s + max_rows], top_k)
             for s in range(0, patches.shape[0], max_rows)]
    rows = concat(parts)
    clean, patched = rows[0], rows[1:]
    k = patched.ids.shape[-1]
    top = TopTokens(patched.ids.reshape(n_cells, len(scales), k), patched.probs.reshape(n_cells, len(scales), k),
                    patched.tokens.reshape(n_cells, len(scales), k))

    ignore = {normalise_token(t) for t in model.tokenizer.convert_ids_to_tokens(prompt_ids[0].tolist())}
    ignore |= {normalise_token(t) for t in clean.tokens.tolist()}
    content = _content_mask(top, ignore, model.tokenizer.all_special_tokens)
    stability, shared = _stability(top.ids, content)
    best_idx = stability.argmax(dim=1).tolist()         # ties go to the smallest scale
    best_scale = [scales[i] for i in best_idx]
    selected = [[t for t, keep in zip(top.tokens[c, i], shared[c, i].tolist(), strict=True) if keep]
                for c, i in enumerate(best_idx)]
    chosen_by = ["stability"] * n_cells
    if grader is not None:
        for c in range(n_cells):  # an ungraded cell selects nothing: its reader sees every scale instead
            try:
                best_scale[c], selected[c] = _ask_grader(grader, scales, top.tokens[c])
                chosen_by[c] = "llm"
            except Ungraded as exc:
                selected[c], chosen_by[c] = [], f"ungraded: {exc}"
    return PatchscopeResult(scales=scales, layers=list(layers), top=top, stability=stability,
                            best_scale=best_scale, selected_tokens=selected, chosen_by=chosen_by)


def patchscope_grid(model: LoadedModel, vectors: Float[Tensor, "layer pos d_model"],
                    norms: Float[Tensor, " layer"] | Float[Tensor, "layer pos"] | None,
                    layers: Sequence[int], positions: Sequence[int], **kwargs: object) -> PatchscopeResult:
    """Patchscope of the cells `(l, p) for l in layers for p in positions` of an ADL grid, in that order."""
    cells = [(layer, pos) for layer in layers for pos in positions]
    picked = torch.stack([vectors[layer, pos] for layer, pos in cells])
    target = None
    if norms is not None:
        target = torch.stack([norms[layer] if norms.ndim == 1 else norms[layer, pos] for layer, pos in cells])
    return patchscope(model, picked, [layer for layer, _ in cells], target, **kwargs)  # type: ignore[arg-type]


def _supports_logits_to_keep(model: LoadedModel) -> bool:
    return "logits_to_keep" in inspect.signature(model.hf.forward).parameters


def _patched_top(model: LoadedModel, prompt_ids: Int[Tensor, "1 seq"], patches: Float[Tensor, "row d_model"],
                 row_layers: Int[Tensor, " row"], top_k: int) -> TopTokens:
    """One forward: row r gets `patches[r]` written over the last position after layer `row_layers[r]`.

    Runs here or on NDIF (`remote=model.remote`): the block touches only envoys and tensors, and only the
    top-k of each row comes back (not the vocab-sized distribution).
    """
    batch = prompt_ids.expand(patches.shape[0], -1)
    kwargs = {"logits_to_keep": 1} if _supports_logits_to_keep(model) else {}
    root, plan = model.nn, injection_plan(model, patches, row_layers)
    with torch.inference_mode(), root.trace(batch, remote=model.remote, **kwargs):
        for envoy, rows, values in plan:
            out = envoy.output
            out[rows.to(out.device), -1, :] = values.to(out.device, out.dtype)
        probs = torch.softmax(root.output.logits[:, -1, :].float(), dim=-1)
        top = probs.topk(min(top_k, probs.shape[-1]), dim=-1)
        ids, probs = top.indices.cpu().save(), top.values.cpu().save()
    return TopTokens(ids=ids, probs=probs, tokens=decode_ids(model.tokenizer, ids))


def injection_plan(model: LoadedModel, patches: Float[Tensor, "row d_model"], row_layers: Int[Tensor, " row"]
                   ) -> list[tuple[Any, Int[Tensor, " n"], Float[Tensor, "n d_model"]]]:
    """`(layer envoy, rows, values)` per patched layer, in forward order (as nnsight requires); rows with
    layer -1 stay clean."""
    plan = []
    for layer in sorted(set(row_layers.tolist()) - {-1}):
        rows = (row_layers == layer).nonzero().squeeze(1)
        plan.append((model.nn_layer(layer), rows, patches[rows]))
    return plan


def inject_last(model: LoadedModel, patches: Float[Tensor, "row d_model"], row_layers: Int[Tensor, " row"]) -> None:
    """Inside an nnsight trace: replace row r's last-position residual after layer `row_layers[r]` by
    `patches[r]` (rows with layer -1 stay clean). Earlier positions are never touched."""
    for envoy, rows, values in injection_plan(model, patches, row_layers):
        out = envoy.output
        out[rows.to(out.device), -1, :] = values.to(out.device, out.dtype)


def _content_mask(top: TopTokens, ignore: set[str], specials: Sequence[str]) -> Bool[Tensor, "cell scale k"]:
    """True where a token means something beyond the prompt: not trivial, not an identity-prompt echo."""
    unique = sorted(set(top.tokens.reshape(-1).tolist()))
    keep = {t: not is_trivial_token(t, specials) and normalise_token(t) not in ignore for t in unique}
    return torch.from_numpy(np.vectorize(keep.__getitem__, otypes=[bool])(top.tokens))


def _stability(ids: Int[Tensor, "cell scale k"], content: Bool[Tensor, "cell scale k"]
               ) -> tuple[Float[Tensor, "cell scale"], Bool[Tensor, "cell scale k"]]:
    """Offline best-scale score: share of the top-k that are content tokens shared with a neighbour scale.

    Why: too small a scale leaves the identity prompt in charge (its own words and digits, filtered as
    echoes); too large a scale breaks the model (punctuation, whitespace, junk, filtered as trivial) or
    flips between unrelated tokens. A scale whose meaningful tokens persist at the adjacent scales reads the
    vector itself, not noise. Also returns which tokens are shared (the offline "selected tokens").
    """
    k = ids.shape[-1]
    eq = (ids[:, :-1, :, None] == ids[:, 1:, None, :]) & content[:, :-1, :, None] & content[:, 1:, None, :]
    in_next = torch.zeros_like(content)
    in_prev = torch.zeros_like(content)
    in_next[:, :-1] = eq.any(dim=3)        # token of scale i found among scale i+1's content tokens
    in_prev[:, 1:] = eq.any(dim=2)         # token of scale i+1 found among scale i's content tokens
    n_neighbours = torch.full(ids.shape[:2], 2.0)
    n_neighbours[:, 0] = n_neighbours[:, -1] = 1.0
    if ids.shape[1] == 1:
        return content.float().sum(-1) / k, content
    score = (in_next.float().sum(-1) + in_prev.float().sum(-1)) / (n_neighbours * k)
    return score, in_next | in_prev


def _ask_grader(grader: ScaleGrader, scales: tuple[float, ...], tokens: np.ndarray) -> tuple[float, list[str]]:
    """The grader's (scale, tokens), snapped to the grid; `Ungraded` when its answer names no scale of ours."""
    best, selected = grader([(s, tokens[i].tolist()) for i, s in enumerate(scales)])
    if not math.isfinite(best):
        raise Ungraded("the judge named no scale")
    nearest = min(scales, key=lambda s: abs(s - best))
    if abs(nearest - best) > 0.051:
        raise Ungraded(f"the judge named scale {best:g}, which was not shown")
    return nearest, list(selected)
