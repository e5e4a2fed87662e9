"""Diff mining: the tokens the finetune pushes up most often, over a corpus.

At every position the top-K tokens of (log p_ft − log p_base) are taken; a token's count is the number of
positions where it made that top-K. Tokens the finetune was trained towards come up everywhere, generic
reshuffles do not. Ties in count are broken by the summed difference. Each token comes with the contexts
where its difference was largest.
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from engine.jobs import JobContext
from engine.lenses.batching import encode_texts, text_batches
from engine.lenses.forward import pair_pass
from engine.lenses.lens_cache import Computed
from engine.lenses.topics import nmf_topics
from engine.models.pair import ModelPair
from engine.readouts.filters import is_trivial_token
from engine.readouts.topk import decode_ids


def rank_tokens(top_ids: Int[Tensor, "pos top"], top_vals: Float[Tensor, "pos top"], vocab: int, n: int
                ) -> tuple[Int[Tensor, " n"], Int[Tensor, " n"], Float[Tensor, " n"]]:
    """(token ids, counts, summed differences) of the `n` tokens most often in a position's top-K."""
    counts = torch.bincount(top_ids.reshape(-1), minlength=vocab)
    sums = torch.zeros(vocab).index_add_(0, top_ids.reshape(-1), top_vals.reshape(-1).float())
    by_sum = torch.argsort(sums, descending=True, stable=True)
    order = by_sum[torch.argsort(counts[by_sum], descending=True, stable=True)]
    order = order[counts[order] > 0][:n]
    return order, counts[order], sums[order]


def best_positions(top_ids: Int[Tensor, "pos top"], top_vals: Float[Tensor, "pos top"], tokens: Int[Tensor, " n"],
                   examples: int) -> tuple[Int[Tensor, "n ex"], Float[Tensor, "n ex"]]:
    """For each token, the positions where its difference was largest (value −inf where it had fewer)."""
    hit = top_ids.unsqueeze(-1) == tokens.view(1, 1, -1)
    value = torch.where(hit, top_vals.unsqueeze(-1), float("-inf")).amax(dim=1)
    vals, where = value.topk(min(examples, value.shape[0]), dim=0)
    return where.T, vals.T


def mine(pair: ModelPair, texts: list[str], top_k: int = 20, n_tokens: int = 30, examples: int = 3,
         context: int = 12, max_tokens: int = 128, batch_size: int = 4, n_topics: int = 0,
         ctx: JobContext | None = None) -> Computed:
    """(payload, tensors): the `n_tokens` most frequent top-K tokens with counts and example contexts, and with
    `n_topics` > 0 the NMF topics of the same top-K."""
    ctx = ctx or JobContext()
    tokenizer = pair.tokenizer
    encoded, start = encode_texts(tokenizer, texts, max_tokens)
    ids_parts, val_parts, where_parts = [], [], []
    for batch in text_batches(encoded, start, batch_size, tokenizer.pad_token_id):
        sides = pair_pass(pair, batch, 0)
        vals, ids = (sides["ft"][0] - sides["base"][0]).topk(top_k, dim=-1)
        rows, cols = batch.valid.nonzero(as_tuple=True)
        ids_parts.append(ids[rows, cols])
        val_parts.append(vals[rows, cols])
        where_parts.append(torch.stack([rows + batch.lo, cols], dim=1))
        ctx.progress(min(batch.lo + batch_size, len(texts)), len(texts), "texts")
    top_ids, top_vals, where = torch.cat(ids_parts), torch.cat(val_parts), torch.cat(where_parts)
    vocab = int(pair.ft.hf.get_output_embeddings().weight.shape[0])
    tokens, counts, sums = rank_tokens(top_ids, top_vals, vocab, n_tokens)
    example_pos, example_vals = best_positions(top_ids, top_vals, tokens, examples)
    strings = decode_ids(tokenizer, tokens).tolist()
    specials = tokenizer.all_special_tokens
    out = []
    for i, token in enumerate(strings):
        found = example_vals[i] > float("-inf")
        contexts = [_context(tokenizer, encoded, int(where[p, 0]), int(where[p, 1]), start, context)
                    | {"diff": round(float(v), 4)}
                    for p, v in zip(example_pos[i][found].tolist(), example_vals[i][found].tolist(), strict=True)]
        out.append({"token": token, "id": int(tokens[i]), "count": int(counts[i]),
                    "share": round(int(counts[i]) / len(top_ids), 4), "mean_diff": round(float(sums[i] / counts[i]), 4),
                    "trivial": is_trivial_token(token, specials), "examples": contexts})
    payload = {"top_k": top_k, "n_texts": len(texts), "n_positions": len(top_ids), "tokens": out}
    if n_topics > 0:
        payload["topics"] = nmf_topics(top_ids, top_vals, tokenizer, n_topics)
    return payload, {"token_ids": tokens.numpy(), "counts": counts.numpy(), "sums": sums.numpy()}


def _context(tokenizer: Any, encoded: list[list[int]], row: int, col: int, start: int, width: int) -> dict[str, Any]:
    """The text up to and including the position whose next-token difference was large."""
    return {"text": row, "position": col - start,
            "context": tokenizer.decode(encoded[row][max(start, col - width + 1): col + 1])}
