"""Patchscope: let the model say what a vector means by patching it into identity prompts.

As in the reference (`diffing-toolkit`'s `patchscope_lens`): the vector (rescaled to a target norm, times a
scale, for every scale and its negative) replaces the residual at the last (`?`) position of three identity
prompts such as `man -> man\\n1135 -> 1135\\nhello -> hello\\n?` after its own layer. A token counts only if
it is in the top `set_k` of the next-token distribution under *every* prompt; its probability is the mean
over the prompts. All cells × scales × prompts run in one batched forward (chunked only to bound memory,
prompts left-padded with true position ids); only each row group's top-k comes back.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from engine import jobs
from engine.errors import Ungraded
from engine.models.loading import LoadedModel
from engine.ndif.limits import RequestLimits
from engine.readouts.filters import is_trivial_token, normalise_token
from engine.readouts.topk import TopTokens, concat, decode_ids

# The reference's three identity prompts (nnterp `repeat_prompt(words, rel=" -> ")`).
IDENTITY_PROMPTS: tuple[str, ...] = tuple(
    "\n".join(f"{w} -> {w}" for w in words) + "\n?"
    for words in (("man", "1135", "hello"), ("bear", "42", "blue"), ("921", "target", "anna")))
# A token must be in each prompt's top INTERSECTION_TOP_K to count (the reference's `intersection_top_k`).
INTERSECTION_TOP_K = 16384
# The reference grid: 0.5–2.0 in steps of 0.1, then 3, 4, 5, 10, 20, then 20→200 in 10 steps (20 once),
# each with its negative (the reference patches s·v and −s·v in the same batch).
SCALE_MAGNITUDES: tuple[float, ...] = tuple(
    sorted({round(0.5 + 0.1 * i, 1) for i in range(16)} | {3.0, 4.0, 5.0, 10.0, 20.0}
           | {round(float(x), 1) for x in torch.linspace(20.0, 200.0, 10).tolist()}))
DEFAULT_SCALES: tuple[float, ...] = tuple(sorted({-s for s in SCALE_MAGNITUDES} | set(SCALE_MAGNITUDES)))

ScaleGrader = Callable[[list[tuple[float, list[str]]]], tuple[float, list[str]]]
"""Picks the best scale of one cell from `[(scale, tokens), ...]`; returns (scale, selected tokens), or raises
`Ungraded` when it has no usable answer."""


@dataclass
class PatchscopeResult:
    """Every scale's top tokens per cell, and the chosen scale with its coherent "selected tokens".

    Scales are sorted (negatives first); a zero probability marks a top-k slot the prompt intersection left
    empty. `best_by_sign` holds the offline criterion's pick on each side (`{"+": s, "-": -s}`).
    """

    scales: tuple[float, ...]
    layers: list[int]
    prompts: tuple[str, ...]
    top: TopTokens                      # grid [cell, scale]
    stability: Float[Tensor, "cell scale"]
    best_scale: list[float]
    best_by_sign: list[dict[str, float]]
    selected_tokens: list[list[str]]
    chosen_by: list[str]                # "llm", "stability" or "ungraded: <why>", per cell

    def best(self, cell: int) -> TopTokens:
        """Top tokens of `cell` at its chosen scale."""
        return self.top[cell, self.scales.index(self.best_scale[cell])]


def patchscope(model: LoadedModel, vectors: Float[Tensor, "cell d_model"], layers: Sequence[int],
               target_norms: Float[Tensor, " cell"] | Sequence[float] | None = None,
               scales: Sequence[float] = DEFAULT_SCALES, prompts: Sequence[str] = IDENTITY_PROMPTS,
               top_k: int = 20, set_k: int = INTERSECTION_TOP_K, grader: ScaleGrader | None = None,
               max_rows: int = 256) -> PatchscopeResult:
    """Patchscope of each vector at its own layer (`layers[i]` = the decoder layer vector i was read after).

    `target_norms[i]` is the norm each vector is rescaled to before the scale is applied (None: use the
    vector as is). One forward carries all cells × scales × prompts (plus one clean row per prompt for the
    offline criterion); `max_rows` splits it, whole prompt groups at a time, only when memory demands.
    """
    scales = tuple(sorted(float(s) for s in scales))
    prompts = tuple(prompts)
    n_cells, n_prompts = vectors.shape[0], len(prompts)
    if len(layers) != n_cells:
        raise ValueError(f"{n_cells} vectors but {len(layers)} layers")
    if any(not 0 <= layer < model.n_layers for layer in layers):
        raise ValueError(f"layers must lie in [0, {model.n_layers})")
    if not prompts:
        raise ValueError("Patchscope needs at least one identity prompt")
    direction = vectors.float()
    if target_norms is not None:
        norms = torch.as_tensor(target_norms, dtype=torch.float32).reshape(n_cells, 1)
        direction = direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-8) * norms
    scale_t = torch.tensor(scales, dtype=torch.float32)
    patches = (direction[:, None, :] * scale_t[None, :, None]).reshape(-1, model.d_model)
    group_layers = torch.tensor(layers).repeat_interleave(len(scales))
    # Group 0 is the clean (unpatched) prompts: their answer is what "the identity prompts alone" say.
    patches = torch.cat([torch.zeros(1, model.d_model), patches])
    group_layers = torch.cat([torch.tensor([-1]), group_layers])

    batch = identity_batch(model, prompts)
    if model.remote:
        max_rows = RequestLimits.current().rows_per_request(4 * (model.d_model + 2 * top_k), max_rows)
    groups = max(1, max_rows // n_prompts)
    run_rows = _patched_top if model.remote else _patched_top_cached
    ctx, parts = jobs.current(), []
    for s in range(0, patches.shape[0], groups):
        ctx.progress(s, patches.shape[0], "scaled vectors read")
        parts.append(run_rows(model, batch, patches[s:s + groups], group_layers[s:s + groups], top_k, set_k))
    ctx.progress(patches.shape[0], patches.shape[0], "scaled vectors read")
    rows = concat(parts)
    clean, patched = rows[0], rows[1:]
    k = patched.ids.shape[-1]
    top = TopTokens(patched.ids.reshape(n_cells, len(scales), k), patched.probs.reshape(n_cells, len(scales), k),
                    patched.tokens.reshape(n_cells, len(scales), k))

    ignore = {normalise_token(t) for ids in batch.ids.tolist() for t in model.tokenizer.convert_ids_to_tokens(ids)}
    ignore |= {normalise_token(t) for t in clean.tokens.tolist()}
    content = _content_mask(top, ignore, model.tokenizer.all_special_tokens)
    stability, shared = signed_stability(scales, top.ids, content)
    best_by_sign = [_best_by_sign(scales, stability[c]) for c in range(n_cells)]
    best_scale = [_chosen(picks, stability[c], scales) for c, picks in enumerate(best_by_sign)]
    selected = [[t for t, keep in zip(top.tokens[c, i], shared[c, i].tolist(), strict=True) if keep]
                for c, i in enumerate(scales.index(s) for s in best_scale)]
    chosen_by = ["stability"] * n_cells
    if grader is not None:
        for c in range(n_cells):  # an ungraded cell selects nothing: its reader sees every scale instead
            ctx.progress(c, n_cells, "cells graded")
            try:
                best_scale[c], selected[c] = _ask_grader(grader, scales, top[c])
                chosen_by[c] = "llm"
            except Ungraded as exc:
                selected[c], chosen_by[c] = [], f"ungraded: {exc}"
    return PatchscopeResult(scales=scales, layers=list(layers), prompts=prompts, top=top, stability=stability,
                            best_scale=best_scale, best_by_sign=best_by_sign, selected_tokens=selected,
                            chosen_by=chosen_by)


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


@dataclass
class IdentityBatch:
    """The identity prompts left-padded to one length, with the position ids each would have alone."""

    ids: Int[Tensor, "prompt seq"]
    attention_mask: Int[Tensor, "prompt seq"]
    position_ids: Int[Tensor, "prompt seq"]

    def repeat(self, groups: int) -> tuple[Int[Tensor, "row seq"], ...]:
        """Rows `g * n_prompts + p` = prompt p, for `groups` groups."""
        return tuple(t.repeat(groups, 1) for t in (self.ids, self.attention_mask, self.position_ids))


def identity_batch(model: LoadedModel, prompts: Sequence[str]) -> IdentityBatch:
    """Tokenize `prompts` (BOS as the tokenizer adds it) and left-pad them so the last position is `?`."""
    tok = model.tokenizer
    encoded = [tok(p)["input_ids"] for p in prompts]
    pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    width = max(len(e) for e in encoded)
    ids = torch.tensor([[pad] * (width - len(e)) + e for e in encoded])
    mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded])
    return IdentityBatch(ids, mask, (mask.cumsum(-1) - 1).clamp_min(0))


def _supports(model: LoadedModel, name: str) -> bool:
    return name in inspect.signature(model.hf.forward).parameters


def _patched_top(model: LoadedModel, batch: IdentityBatch, patches: Float[Tensor, "group d_model"],
                 group_layers: Int[Tensor, " group"], top_k: int, set_k: int) -> TopTokens:
    """One forward of every prompt per group: group g's rows get `patches[g]` over their last position after
    layer `group_layers[g]`; returns each group's top-k of the prompt intersection (the reference's rule: a
    token counts only if it is in the top `set_k` under every prompt, with the mean of its probabilities;
    tokens outside the intersection get 0).

    Runs here or on NDIF (`remote=model.remote`): the block touches only envoys and torch (no helper of this
    project, which a server lacks), and only the top-k of each group comes back, not the distributions.
    """
    n_prompts = batch.ids.shape[0]
    ids, mask, positions = (t.to(model.input_device) for t in batch.repeat(patches.shape[0]))
    kwargs: dict[str, Any] = {"attention_mask": mask}
    kwargs |= {"position_ids": positions} if _supports(model, "position_ids") else {}
    kwargs |= {"logits_to_keep": 1} if _supports(model, "logits_to_keep") else {}
    root = model.nn
    plan = injection_plan(model, patches.repeat_interleave(n_prompts, dim=0),
                          group_layers.repeat_interleave(n_prompts))
    with torch.inference_mode(), root.trace(ids, remote=model.remote, **kwargs):
        for envoy, rows, values in plan:
            out = envoy.output
            out[rows.to(out.device), -1, :] = values.to(out.device, out.dtype)
        probs = torch.softmax(root.output.logits[:, -1, :].float(), dim=-1)
        probs = probs.reshape(-1, n_prompts, probs.shape[-1])                       # [group, prompt, vocab]
        in_top = torch.zeros_like(probs, dtype=torch.bool)
        in_top.scatter_(-1, probs.topk(min(set_k, probs.shape[-1]), dim=-1).indices, True)
        mean = probs.mean(dim=1) * in_top.all(dim=1)
        top = mean.topk(min(top_k, mean.shape[-1]), dim=-1)
        top_ids, top_probs = top.indices.cpu().save(), top.values.cpu().save()  # type: ignore[attr-defined]  # nnsight's .save()
    return TopTokens(ids=top_ids, probs=top_probs, tokens=decode_ids(model.tokenizer, top_ids))


def _patched_top_cached(model: LoadedModel, batch: IdentityBatch, patches: Float[Tensor, "group d_model"],
                        group_layers: Int[Tensor, " group"], top_k: int, set_k: int) -> TopTokens:
    """`_patched_top` for a local model, one token per row: the prompts' prefixes (everything before the
    patched `?`, identical in every row) run once into a KV cache, then only the last token of every group ×
    prompt row runs through the model on top of it, patched by a forward hook. Same distributions as the full
    forward (< 1e-4, tests/engine/test_readouts.py), ~20× fewer tokens for the reference's 3 prompts × 121 rows."""
    n_prompts, n_groups = batch.ids.shape[0], patches.shape[0]
    device = model.input_device
    ids, mask, positions = (t.to(device) for t in (batch.ids, batch.attention_mask, batch.position_ids))
    hooks = []
    with torch.inference_mode():
        prefix = model.hf(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=positions[:, :-1],
                          use_cache=True, logits_to_keep=1)
        cache = prefix.cache
        cache.batch_repeat_interleave(n_groups)          # row p * n_groups + g: prompt p, group g
        row_layers = group_layers.repeat(n_prompts)
        row_patches = patches.repeat(n_prompts, 1)
        for layer in sorted(set(row_layers.tolist()) - {-1}):
            rows = (row_layers == layer).nonzero().squeeze(1).to(device)
            values = row_patches[rows.cpu()].to(device)
            hooks.append(model.layers[layer].register_forward_hook(partial(_replace_last, rows, values)))
        try:
            out = model.hf(input_ids=ids[:, -1:].repeat_interleave(n_groups, dim=0),
                           attention_mask=mask.repeat_interleave(n_groups, dim=0),
                           position_ids=positions[:, -1:].repeat_interleave(n_groups, dim=0),
                           cache=cache, use_cache=True)
        finally:
            for hook in hooks:
                hook.remove()
        probs = torch.softmax(out.logits[:, -1, :].float(), dim=-1)
        probs = probs.reshape(n_prompts, n_groups, -1).transpose(0, 1)                  # [group, prompt, vocab]
        in_top = torch.zeros_like(probs, dtype=torch.bool)
        in_top.scatter_(-1, probs.topk(min(set_k, probs.shape[-1]), dim=-1).indices, True)
        mean = probs.mean(dim=1) * in_top.all(dim=1)
        top = mean.topk(min(top_k, mean.shape[-1]), dim=-1)
    top_ids, top_probs = top.indices.cpu(), top.values.cpu()
    return TopTokens(ids=top_ids, probs=top_probs, tokens=decode_ids(model.tokenizer, top_ids))


def _replace_last(rows: Int[Tensor, " n"], values: Float[Tensor, "n d_model"], module: torch.nn.Module,
                  args: Any, output: Tensor) -> Tensor:
    """Forward hook: the decoder layer's output (the residual after it) at the last position of `rows`."""
    output[rows, -1, :] = values.to(output.dtype)
    return output


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


def _content_mask(top: TopTokens, ignore: set[str], specials: Sequence[str]) -> Bool[Tensor, "cell scale top"]:
    """True where a token means something beyond the prompts: in the intersection (probability > 0), not
    trivial, not an identity-prompt echo."""
    unique = sorted(set(top.tokens.reshape(-1).tolist()))
    keep = {t: not is_trivial_token(t, specials) and normalise_token(t) not in ignore for t in unique}
    return torch.from_numpy(np.vectorize(keep.__getitem__, otypes=[bool])(top.tokens)) & (top.probs > 0)


def signed_stability(scales: Sequence[float], ids: Int[Tensor, "cell scale top"],
                     content: Bool[Tensor, "cell scale top"]
                     ) -> tuple[Float[Tensor, "cell scale"], Bool[Tensor, "cell scale top"]]:
    """`_stability` on each sign's scales apart, neighbours by magnitude: −0.5 and +0.5 are opposite
    vectors, not neighbours, so their shared tokens must not vouch for each other."""
    score = torch.zeros(ids.shape[:2])
    shared = torch.zeros_like(content)
    for side in _sides(scales).values():
        score[:, side], shared[:, side] = _stability(ids[:, side], content[:, side])
    return score, shared


def _sides(scales: Sequence[float]) -> dict[str, list[int]]:
    """Scale indices per sign ("+" includes 0), each ordered by magnitude."""
    sides = {"+": [i for i, s in enumerate(scales) if s >= 0], "-": [i for i, s in enumerate(scales) if s < 0]}
    return {sign: sorted(idx, key=lambda i: abs(scales[i])) for sign, idx in sides.items() if idx}


def _chosen(picks: dict[str, float], score: Float[Tensor, " scale"], scales: Sequence[float]) -> float:
    """The positive side's pick, as the reference's automatic Patchscope grades only +scales; the negative side's
    only when the positive side reads nothing stable at all (the −diff's reading stays in `best_by_sign`)."""
    positive = picks.get("+")
    if positive is not None and float(score[scales.index(positive)]) > 0:
        return positive
    return max(picks.values(), key=lambda s: (float(score[scales.index(s)]), s > 0))


def _best_by_sign(scales: Sequence[float], score: Float[Tensor, " scale"]) -> dict[str, float]:
    """The best-scoring scale on each side; ties go to the smallest magnitude."""
    return {sign: scales[max(idx, key=lambda i: (float(score[i]), -abs(scales[i])))]
            for sign, idx in _sides(scales).items()}


def _stability(ids: Int[Tensor, "cell scale top"], content: Bool[Tensor, "cell scale top"]
               ) -> tuple[Float[Tensor, "cell scale"], Bool[Tensor, "cell scale top"]]:
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


def _ask_grader(grader: ScaleGrader, scales: tuple[float, ...], cell: TopTokens) -> tuple[float, list[str]]:
    """The grader's (scale, tokens) from every scale's tokens in the prompt intersection (both signs), snapped
    to the grid; `Ungraded` when its answer names no scale of ours."""
    best, selected = grader([(s, cell.tokens[i][(cell.probs[i] > 0).numpy()].tolist()) for i, s in enumerate(scales)])
    if not math.isfinite(best):
        raise Ungraded("the judge named no scale")
    nearest = min(scales, key=lambda s: abs(s - best))
    if abs(nearest - best) > 0.051:
        raise Ungraded(f"the judge named scale {best:g}, which was not shown")
    return nearest, list(selected)
