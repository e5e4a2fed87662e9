"""`TopTokens`: top-k token ids, probabilities and decoded strings over any grid of readout cells."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


@dataclass
class TopTokens:
    """Top-k of a next-token distribution per cell; leading dims are the caller's grid (e.g. layer, pos).

    `tokens` holds the decoded strings with the same shape as `ids` (a numpy object array), so a cell
    reads as `[(tok, prob), ...]` without touching the tokenizer again.
    """

    ids: Int[Tensor, "... top"]
    probs: Float[Tensor, "... top"]
    tokens: np.ndarray

    def __getitem__(self, index: Any) -> TopTokens:
        return TopTokens(self.ids[index], self.probs[index], self.tokens[index])

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.ids.shape[:-1])

    def head(self, k: int) -> TopTokens:
        """The first `k` tokens of every cell (e.g. top 20 of the cached 100)."""
        return self[..., :k]

    def pairs(self, *cell: int) -> list[tuple[str, float]]:
        """`[(token, prob), ...]` of one cell, best first — the JSON form of a readout."""
        one = self[cell]
        if one.ids.ndim != 1:
            raise ValueError(f"pairs() needs a full cell index, got {cell} for grid shape {self.shape}")
        return list(zip(one.tokens.tolist(), one.probs.tolist(), strict=True))


def decode_ids(tokenizer: PreTrainedTokenizerBase, ids: Int[Tensor, "..."]) -> np.ndarray:
    """Decode every id on its own (each unique id once), returning strings shaped like `ids`."""
    unique, inverse = torch.unique(ids.reshape(-1), return_inverse=True)
    texts = tokenizer.batch_decode(unique.view(-1, 1).tolist(), clean_up_tokenization_spaces=False)
    table = np.array(texts, dtype=object)
    return table[inverse.numpy()].reshape(tuple(ids.shape))


def concat(parts: list[TopTokens]) -> TopTokens:
    """Join chunks computed separately along the first axis."""
    return TopTokens(torch.cat([p.ids for p in parts]), torch.cat([p.probs for p in parts]),
                     np.concatenate([p.tokens for p in parts]))
