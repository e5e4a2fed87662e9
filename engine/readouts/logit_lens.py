"""Logit lens: read a residual-stream vector through the model's own final norm and unembedding."""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from engine.models.loading import LoadedModel
from engine.readouts.topk import TopTokens, concat, top_tokens


def unembed(model: LoadedModel, hidden: Float[Tensor, "n d_model"]) -> Float[Tensor, "n vocab"]:
    """Next-token probabilities `softmax(lm_head(final_norm(h)))`, float32.

    Models that soft-cap their final logits (Gemma 2) get the cap too, so the readout is the
    distribution the model itself would produce from that residual.
    """
    norm_param = next(model.final_norm.parameters(), None)
    device = norm_param.device if norm_param is not None else model.input_device
    normed = model.final_norm(hidden.to(device=device, dtype=model.placement.dtype))
    head_weight = model.lm_head.weight
    logits = model.lm_head(normed.to(head_weight.device)).float()
    cap = getattr(model.hf.config.get_text_config(), "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return torch.softmax(logits, dim=-1)


def logit_lens(model: LoadedModel, vectors: Float[Tensor, "... d_model"], top_k: int = 100,
               chunk_cells: int = 64) -> TopTokens:
    """Top-k tokens of every vector (any leading grid, e.g. `[layer, pos]`), in one pass per chunk.

    Chunks bound memory: a cell's full distribution is vocab-sized (262k floats for Gemma 3).
    Works for the mean difference as well as mean base / finetuned activations.
    """
    if vectors.shape[-1] != model.d_model:
        raise ValueError(f"vectors end in {vectors.shape[-1]}, the model's d_model is {model.d_model}")
    grid = tuple(vectors.shape[:-1])
    flat = vectors.reshape(-1, model.d_model)
    parts: list[TopTokens] = []
    with torch.inference_mode():
        for start in range(0, flat.shape[0], chunk_cells):
            probs = unembed(model, flat[start:start + chunk_cells])
            parts.append(top_tokens(model.tokenizer, probs, top_k))
    joined = concat(parts)
    k = joined.ids.shape[-1]
    return TopTokens(joined.ids.reshape(*grid, k), joined.probs.reshape(*grid, k),
                     joined.tokens.reshape(*grid, k))
