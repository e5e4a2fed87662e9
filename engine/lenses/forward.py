"""One forward per side that yields both the next-token log-probs and one layer's residual stream.

Why one trace: the layer output and the logits of the same pass cost one forward, not two.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from engine.adl.depth import middle_layer
from engine.errors import UserError
from engine.lenses.batching import TextBatch
from engine.models.loading import LoadedModel
from engine.models.pair import ModelPair, Side


def resolve_layer(layer: int | None, n_layers: int) -> int:
    """`None` = the middle layer (relative depth 0.5); negative counts from the end."""
    if layer is None:
        return middle_layer(n_layers)
    resolved = layer + n_layers if layer < 0 else layer
    if not 0 <= resolved < n_layers:
        raise UserError(f"layer {layer} out of range for a {n_layers}-layer model",
                        f"pass a layer between 0 and {n_layers - 1}")
    return resolved


def side_pass(model: LoadedModel, batch: TextBatch, layer: int
              ) -> tuple[Float[Tensor, "batch seq vocab"], Float[Tensor, "batch seq d_model"]]:
    """Log-probs of every next token and the residual after decoder layer `layer` (float32, CPU)."""
    device = model.input_device
    with torch.inference_mode(), model.nn.trace(batch.ids.to(device),
                                                attention_mask=batch.attention_mask.to(device)):
        acts = model.nn_layer(layer).output.save()
        logits = model.nn.output.logits.save()
    return torch.log_softmax(logits.float(), dim=-1).cpu(), acts.float().cpu()


def pair_pass(pair: ModelPair, batch: TextBatch, layer: int
              ) -> dict[Side, tuple[Float[Tensor, "batch seq vocab"], Float[Tensor, "batch seq d_model"]]]:
    """`side_pass` of both sides on the same batch."""
    out = {}
    side: Side
    for side in ("base", "ft"):
        with pair.use(side) as model:
            out[side] = side_pass(model, batch, layer)
    return out
