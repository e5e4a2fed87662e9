"""Causal check: how much of the finetune lives in the activations of the first k positions.

The finetuned model runs twice on each batch in one forward: clean, and with its residual after `layer`
at the first k positions after BOS replaced by the base model's (or shifted by −mean diff of an ADL run).
The loss on the tokens after those positions then shows how much of the finetune's gain on its own
training texts those positions carry, beside the same measure on generic text (where a finetune should
change little).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from engine.errors import UserError
from engine.jobs import JobContext
from engine.lenses.batching import TextBatch, encode_texts, text_batches
from engine.lenses.forward import resolve_layer
from engine.models.loading import LoadedModel
from engine.models.pair import ModelPair

Mode = Literal["base", "diff"]


def next_token_nll(logits: Float[Tensor, "batch seq vocab"], ids: Int[Tensor, "batch seq"]
                   ) -> Float[Tensor, "batch seq"]:
    """−log p(token t+1) at each position t (last position 0)."""
    logp = torch.log_softmax(logits.float(), dim=-1)[:, :-1]
    nll = -logp.gather(2, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    return torch.nn.functional.pad(nll, (0, 1))


def scored_tokens(batch: TextBatch) -> Bool[Tensor, "batch seq"]:
    """Positions t after BOS whose next token t+1 is real (the tokens a loss is taken over)."""
    scored = batch.attention_mask.bool().roll(-1, dims=1) & batch.valid
    scored[:, -1] = False
    return scored


def nll_and_acts(model: LoadedModel, batch: TextBatch, layer: int, start: int, k: int
                 ) -> tuple[Float[Tensor, "batch seq"], Float[Tensor, "batch pos d_model"]]:
    """Next-token NLL of the batch and the residual after `layer` at columns `start .. start + k`, one forward."""
    device = model.input_device
    with torch.inference_mode(), model.nn.trace(batch.ids.to(device), attention_mask=batch.attention_mask.to(device)):
        acts = model.nn_layer(layer).output[:, start: start + k].save()
        logits = model.nn.output.logits.save()
    return next_token_nll(logits.cpu(), batch.ids), acts


def _ft_pass(model: LoadedModel, batch: TextBatch, layer: int, start: int, k: int,
             patch: Float[Tensor, "batch pos d_model"], mode: Mode
             ) -> tuple[Float[Tensor, "batch seq"], Float[Tensor, "batch seq"]]:
    """(clean nll, patched nll) from one forward over the batch stacked twice."""
    device = model.input_device
    rows = batch.ids.shape[0]
    ids, mask = batch.ids.repeat(2, 1), batch.attention_mask.repeat(2, 1)
    with torch.inference_mode(), model.nn.trace(ids.to(device), attention_mask=mask.to(device)):
        out = model.nn_layer(layer).output
        value = patch.to(out.device, out.dtype)
        if mode == "base":
            out[rows:, start: start + k] = value
        else:
            out[rows:, start: start + k] += value
        logits = model.nn.output.logits.save()
    nll = next_token_nll(logits.cpu(), ids)
    return nll[:rows], nll[rows:]


def _losses(nll: dict[str, Tensor], mask: Bool[Tensor, "n seq"]) -> dict[str, float | None]:
    """Mean loss per model over the masked tokens; None for every entry when no token is masked in."""
    if not bool(mask.any()):
        return {"base": None, "ft": None, "patched": None, "delta": None, "share_of_gain_removed": None}
    losses: dict[str, float | None] = {name: float(values[mask].mean()) for name, values in nll.items()}
    gain = losses["base"] - losses["ft"]  # type: ignore[operator]
    losses["delta"] = losses["patched"] - losses["ft"]  # type: ignore[operator]
    losses["share_of_gain_removed"] = losses["delta"] / gain if abs(gain) > 1e-6 else None  # type: ignore[operator]
    return losses


def set_effect(pair: ModelPair, texts: list[str], layer: int, k: int, mode: Mode,
               diff: Float[Tensor, "pos d_model"] | None, max_tokens: int, batch_size: int, ctx: JobContext,
               label: str) -> dict[str, Any]:
    """Mean loss of base, finetuned and patched finetuned on one text set, after the k positions and overall."""
    tokenizer = pair.tokenizer
    encoded, start = encode_texts(tokenizer, texts, max_tokens)
    encoded = [e for e in encoded if len(e) >= start + k]
    if not encoded:
        raise UserError(f"no {label} text has {k} tokens", "use longer texts or a smaller -k")
    parts: dict[str, list[Tensor]] = {"base": [], "ft": [], "patched": [], "after": [], "all": []}
    width = max(len(e) for e in encoded)
    for batch in text_batches(encoded, start, batch_size, tokenizer.pad_token_id):
        with pair.use("base") as model:
            nll_base, base_acts = nll_and_acts(model, batch, layer, start, k)
        if mode == "base":
            patch = base_acts
        else:
            assert diff is not None  # causal_check refuses the diff mode without one
            patch = -diff.unsqueeze(0).expand(batch.ids.shape[0], -1, -1)
        with pair.use("ft") as model:
            nll_ft, nll_patched = _ft_pass(model, batch, layer, start, k, patch, mode)
        scored = scored_tokens(batch)
        columns = torch.arange(batch.ids.shape[1])
        for name, values in (("base", nll_base), ("ft", nll_ft), ("patched", nll_patched),
                             ("after", scored & (columns >= start + k)), ("all", scored)):
            parts[name].append(torch.nn.functional.pad(values, (0, width - values.shape[1])))
        ctx.progress(min(batch.lo + batch_size, len(encoded)), len(encoded), f"{label} texts")
    nll = {name: torch.cat(parts[name]) for name in ("base", "ft", "patched")}
    after, scored_all = torch.cat(parts["after"]), torch.cat(parts["all"])
    result: dict[str, Any] = {"n_texts": len(encoded)}
    for scope, mask in (("after_k", after), ("all", scored_all)):
        losses = _losses(nll, mask)
        result[scope] = {name: (round(v, 5) if v is not None else None) for name, v in losses.items()}
    return result


def causal_check(pair: ModelPair, ft_texts: list[str], generic_texts: list[str], layer: int | None = None,
                 k: int = 5, mode: Mode = "base", diff: Float[Tensor, "pos d_model"] | None = None,
                 max_tokens: int = 64, batch_size: int = 4, ctx: JobContext | None = None) -> dict[str, Any]:
    """Loss change from patching the first k positions, on finetuning texts and on generic text."""
    ctx = ctx or JobContext()
    layer = resolve_layer(layer, pair.n_layers)
    if k <= 0:
        raise UserError(f"k must be positive, got {k}", "pass -k 5")
    if mode == "diff" and (diff is None or diff.shape[0] < k):
        raise UserError("the −diff mode needs an ADL run's mean diff at k positions", "pass --run RUN with k ≥ -k")
    if mode == "diff":
        assert diff is not None  # checked just above
        diff = diff[:k].float()
    sets = {name: set_effect(pair, texts, layer, k, mode, diff, max_tokens, batch_size, ctx, name)
            for name, texts in (("finetuning", ft_texts), ("generic", generic_texts))}
    return {"layer": layer, "k": k, "mode": mode, "sets": sets}
