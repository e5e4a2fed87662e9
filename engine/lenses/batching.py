"""Whole texts as right-padded batches (BOS + up to `max_tokens` tokens each).

Right padding keeps every real token at the same position it has alone, so a causal model's outputs on
real tokens do not depend on the batch; pads are masked out of every statistic.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from engine.errors import UserError


@dataclass
class TextBatch:
    """Rows `lo .. lo + len(ids)` of the encoded texts; `valid` marks real tokens after BOS."""

    lo: int
    ids: Int[Tensor, "batch seq"]
    attention_mask: Int[Tensor, "batch seq"]
    valid: Bool[Tensor, "batch seq"]


def encode_texts(tokenizer: Any, texts: Sequence[str], max_tokens: int) -> tuple[list[list[int]], int]:
    """Token ids per text (BOS first when the tokenizer has one, once: a chat template may already have written it)
    and the index where text tokens start."""
    if max_tokens < 2:
        raise UserError(f"max_tokens must be at least 2, got {max_tokens}", "pass --max-tokens 64 or more")
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    encoded = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    out = [bos + (ids[len(bos):] if bos and ids[:1] == bos else ids)[:max_tokens] for ids in encoded]
    if any(len(ids) == len(bos) for ids in out):
        raise UserError("a text has no tokens", "pass non-empty texts")
    return out, len(bos)


def text_batches(encoded: Sequence[Sequence[int]], start: int, batch_size: int, pad_id: int
                 ) -> Iterator[TextBatch]:
    """Right-padded batches over `encoded`, in order."""
    if batch_size <= 0:
        raise UserError(f"batch size must be positive, got {batch_size}", "pass --batch-size 4")
    for lo in range(0, len(encoded), batch_size):
        chunk = encoded[lo: lo + batch_size]
        lengths = torch.tensor([len(ids) for ids in chunk])
        seq = int(lengths.max())
        ids = torch.full((len(chunk), seq), pad_id, dtype=torch.long)
        for row, row_ids in enumerate(chunk):
            ids[row, : len(row_ids)] = torch.tensor(row_ids)
        columns = torch.arange(seq).unsqueeze(0)
        mask = (columns < lengths.unsqueeze(1)).long()
        yield TextBatch(lo, ids, mask, mask.bool() & (columns >= start))
