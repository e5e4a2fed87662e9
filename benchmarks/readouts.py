"""Readouts: logit lens of every layer × position and a full Patchscope scale grid, time per cell.

Each is timed against its floor, interleaved: for the lens, the final norm + unembedding + softmax of the
same vectors (top-k and token strings are what it adds); for Patchscope, a bare forward of the same rows
of the three padded identity prompts (no patching, no nnsight, no intersection), keeping only the last
position's logits. Both read through the finetuned model, as the readouts do by default.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from benchmarks.timing import Gauge, interleaved
from engine.adl.depth import middle_layer
from engine.models.loading import LoadedModel
from engine.models.pair import ModelPair
from engine.readouts.logit_lens import logit_lens
from engine.readouts.patchscope import DEFAULT_SCALES, IDENTITY_PROMPTS, identity_batch, patchscope_grid

LENS_ROUNDS = 2
PATCH_ROUNDS = 1


def _unembed_only(model: LoadedModel, flat: torch.Tensor, chunk: int = 64) -> None:
    """softmax(lm_head(final_norm(h))) in the lens's chunks, straight through the torch modules."""
    weight = model.lm_head.weight
    assert isinstance(weight, torch.Tensor)
    with torch.inference_mode():
        for start in range(0, flat.shape[0], chunk):
            normed = model.final_norm(flat[start:start + chunk].to(weight.device, weight.dtype))
            torch.softmax(model.lm_head(normed).float(), dim=-1)


def lens(pair: ModelPair, vectors: torch.Tensor, gauge: Gauge) -> dict[str, Any]:
    """`logit_lens` (top 100) of the whole `[layer, pos]` grid vs its unembedding floor."""
    cells = vectors.shape[0] * vectors.shape[1]
    with pair.use("ft") as model:
        flat = vectors.reshape(-1, vectors.shape[-1])
        seconds = interleaved([{"lens_floor": lambda: _unembed_only(model, flat),
                                "logit_lens": lambda: logit_lens(model, vectors, top_k=100)}] * LENS_ROUNDS, gauge)
    per_cell = {name: round(1000 * t / (LENS_ROUNDS * cells), 3) for name, t in seconds.items()}
    return {"cells": cells, "ms_per_cell": per_cell["logit_lens"], "floor_ms_per_cell": per_cell["lens_floor"],
            "floor_ratio": round(seconds["lens_floor"] / seconds["logit_lens"], 3)}


def _bare_rows(model: LoadedModel, groups: int, max_rows: int = 256) -> None:
    """The identity prompts `groups` times through the model, last-position logits only, in Patchscope's
    chunks (whole prompt groups)."""
    batch = identity_batch(model, IDENTITY_PROMPTS)
    per_chunk = max(1, max_rows // len(IDENTITY_PROMPTS))
    kwargs = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.hf.forward).parameters else {}
    with torch.inference_mode():
        for start in range(0, groups, per_chunk):
            ids, mask, positions = (t.to(model.input_device) for t in batch.repeat(min(per_chunk, groups - start)))
            model.hf(ids, attention_mask=mask, position_ids=positions, **kwargs)


def patch(pair: ModelPair, vectors: torch.Tensor, norms: torch.Tensor, positions: int, gauge: Gauge
          ) -> dict[str, Any]:
    """Patchscope at the middle layer × the first `positions` positions, every default (± scale) × the three
    identity prompts, `norms` per layer."""
    layer = middle_layer(pair.n_layers)
    pos = list(range(min(positions, vectors.shape[1])))
    groups = 1 + len(pos) * len(DEFAULT_SCALES)
    with pair.use("ft") as model:
        methods = {"patch_floor": lambda: _bare_rows(model, groups),
                   "patchscope": lambda: patchscope_grid(model, vectors, norms, [layer], pos)}
        _bare_rows(model, groups)  # warm-up: first-call allocations for this batch shape
        seconds = interleaved([methods] * PATCH_ROUNDS, gauge)
    cells = len(pos)
    return {"layer": layer, "cells": cells, "scales": len(DEFAULT_SCALES), "prompts": len(IDENTITY_PROMPTS),
            "rows": groups * len(IDENTITY_PROMPTS),
            "ms_per_cell": round(1000 * seconds["patchscope"] / (PATCH_ROUNDS * cells), 1),
            "ms_per_cell_scale": round(1000 * seconds["patchscope"] / (PATCH_ROUNDS * cells * len(DEFAULT_SCALES)),
                                       2),
            "floor_ratio": round(seconds["patch_floor"] / seconds["patchscope"], 3)}
