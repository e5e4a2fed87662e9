"""Sampling from the model's top-k/top-p truncation without sorting or drawing over the whole vocabulary.

transformers samples a step by scaling the logits by 1/T, masking all but the top k (`TopKLogitsWarper`),
sorting the whole vocabulary for top-p (`TopPLogitsWarper`), and drawing with `torch.multinomial` over the whole
vocabulary. With Gemma's 262k tokens the sort and the draw cost more than the forward on a CPU (1 thread, 24 rows:
0.5 s and 0.7 s a step, against 0.06 s for a top-k). `TruncatedSampler` keeps exactly the tokens those warpers
keep, with exactly their probabilities, by taking the top k first (every token past it has probability 0 under
both), applying top-p to those k, and drawing among them; the chosen token is handed to greedy decoding as the
only finite score. The distribution is the same; the draws for a seed are not (another random stream), hence
`SAMPLING_RULE` in the cache keys names this draw.
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor


class TruncatedSampler:
    """A logits processor (duck-typed: transformers is not imported here) that draws the next token from
    softmax(scores / T) truncated to the top `top_k`, then to the smallest top set holding `top_p` of the mass
    (transformers' rules, ties at the k-th score kept), and returns scores that are -inf except at that token."""

    def __init__(self, temperature: float, top_k: int, top_p: float) -> None:
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p

    def kept(self, scores: Float[Tensor, "batch vocab"]) -> tuple[Float[Tensor, "batch top"], Int[Tensor, "batch top"]]:
        """The scaled scores of the tokens a row may draw (-inf where top-p removed one) and their token ids."""
        k = min(max(self.top_k, 1), scores.shape[-1])
        values, indices = scores.topk(k, dim=-1)  # 1/T > 0 keeps the order: only the kept scores are scaled
        kth = values[:, -1:]
        tied = int((scores >= kth).sum(dim=-1).max())
        if tied > k:  # transformers keeps every token scoring at least the k-th score
            values, indices = scores.topk(tied, dim=-1)
            values = values.masked_fill(values < kth, float("-inf"))
        values = values / self.temperature
        if self.top_p < 1.0:
            ascending = values.flip(-1)
            removed = ascending.softmax(dim=-1).cumsum(dim=-1) <= 1 - self.top_p
            removed[:, -1] = False  # the most likely token always stays
            values = values.masked_fill(removed.flip(-1), float("-inf"))
        return values, indices

    def __call__(self, input_ids: Tensor, scores: Float[Tensor, "batch vocab"]) -> Float[Tensor, "batch vocab"]:
        values, indices = self.kept(scores)
        token = indices.gather(-1, torch.multinomial(values.softmax(dim=-1), 1))
        return torch.full_like(scores, float("-inf")).scatter_(-1, token, 0.0)


def truncated_sampler(generation_config: Any, temperature: float, top_k: int | None,
                      top_p: float | None) -> TruncatedSampler | None:
    """The sampler for sampling at `temperature` (> 0) with the config's `top_k`/`top_p` (defaults resolved), or
    None where transformers must sample: no top-k (top-p then needs the full sort), or a warper set beyond
    temperature, top-k and top-p (the same conditions under which `generate` adds one)."""
    c = generation_config
    others = (c.min_p is not None, c.top_h is not None, c.typical_p is not None and c.typical_p < 1.0,
              c.epsilon_cutoff is not None and 0.0 < c.epsilon_cutoff < 1.0,
              c.eta_cutoff is not None and 0.0 < c.eta_cutoff < 1.0, c.watermarking_config is not None)
    if not top_k or any(others):
        return None
    return TruncatedSampler(temperature, int(top_k), 1.0 if top_p is None else float(top_p))
