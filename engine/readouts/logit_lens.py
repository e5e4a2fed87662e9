"""Logit lens: read a residual-stream vector through the model's own final norm and unembedding."""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

from engine.models.envoys import envoy_of
from engine.models.loading import LoadedModel
from engine.ndif.limits import RequestLimits
from engine.readouts.topk import TopTokens, concat, decode_ids


def unembed_top(model: LoadedModel, hidden: Float[Tensor, "n d_model"], top_k: int
                ) -> tuple[Int[Tensor, "n top"], Float[Tensor, "n top"]]:
    """Top-k of `softmax(lm_head(final_norm(h)))` per vector (float32), computed inside a trace.

    The trace runs here or on NDIF (`remote=model.remote`): the model's own final norm and unembedding
    are applied to the vectors through their envoys, and only the top-k comes back. A one-token probe
    starts the trace and is stopped before it goes anywhere. Models that soft-cap their final logits
    (Gemma 2) get the cap too, so the readout is the distribution the model itself would produce.
    """
    norm, head = envoy_of(model, model.final_norm), envoy_of(model, model.lm_head)
    cap = getattr(model.hf.config.get_text_config(), "final_logit_softcapping", None)
    start = model.tokenizer.bos_token_id or model.tokenizer.eos_token_id or 0
    probe = torch.tensor([[start]], device=model.input_device)
    with torch.inference_mode(), model.nn.trace(probe, remote=model.remote) as tracer:
        weight = head.weight
        normed = norm(hidden.to(weight.device, weight.dtype))
        logits = head(normed.to(weight.device)).float()
        if cap:
            logits = torch.tanh(logits / cap) * cap
        top = torch.softmax(logits, dim=-1).topk(min(top_k, logits.shape[-1]), dim=-1)
        ids, probs = top.indices.cpu().save(), top.values.cpu().save()  # type: ignore[attr-defined]  # nnsight's .save()
        tracer.stop()
    return ids, probs


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
    if model.remote:  # a request carries the vectors out and the top-k back
        chunk_cells = RequestLimits.current().rows_per_request(4 * (model.d_model + 2 * top_k), chunk_cells)
    for start in range(0, flat.shape[0], chunk_cells):
        ids, probs = unembed_top(model, flat[start:start + chunk_cells], top_k)
        parts.append(TopTokens(ids, probs, decode_ids(model.tokenizer, ids)))
    joined = concat(parts)
    k = joined.ids.shape[-1]
    return TopTokens(joined.ids.reshape(*grid, k), joined.probs.reshape(*grid, k),
                     joined.tokens.reshape(*grid, k))
