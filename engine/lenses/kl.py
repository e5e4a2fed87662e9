"""Per-token divergence: where on real text the finetuned model's next-token distribution departs from the
base model's, and how far its residual stream has moved at one layer.

Per token t (its position's next-token distributions): KL(ft ‖ base) = Σ p_ft (log p_ft − log p_base), and
‖h_ft − h_base‖ at the chosen layer. Both come from one forward per side. Values belong to the token
*after which* the models predict, so a spike on "the" before "oven" means they disagree about "oven".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from engine.jobs import JobContext
from engine.lenses.batching import encode_texts, text_batches
from engine.lenses.forward import pair_pass, resolve_layer
from engine.lenses.lens_cache import Computed
from engine.models.pair import ModelPair
from engine.readouts.topk import decode_ids

PREDICTIONS = 5


@dataclass
class BatchDivergence:
    """One batch: per-token values, each row's max-KL position and both models' top predictions there."""

    kl: Float[Tensor, "batch seq"]
    diff_norm: Float[Tensor, "batch seq"]
    max_pos: Int[Tensor, " batch"]
    base_top: tuple[Int[Tensor, "batch top"], Float[Tensor, "batch top"]]
    ft_top: tuple[Int[Tensor, "batch top"], Float[Tensor, "batch top"]]


def token_kl(lp_ft: Float[Tensor, "... vocab"], lp_base: Float[Tensor, "... vocab"]) -> Float[Tensor, "..."]:
    """KL(ft ‖ base) per position, clamped at 0 (rounding can make identical rows a hair negative)."""
    return (lp_ft.exp() * (lp_ft - lp_base)).sum(-1).clamp_min(0.0)


def batch_divergence(lp_base: Float[Tensor, "batch seq vocab"], lp_ft: Float[Tensor, "batch seq vocab"],
                     acts_base: Float[Tensor, "batch seq d_model"], acts_ft: Float[Tensor, "batch seq d_model"],
                     valid: Bool[Tensor, "batch seq"]) -> BatchDivergence:
    kl = torch.where(valid, token_kl(lp_ft, lp_base), 0.0)
    diff_norm = torch.where(valid, (acts_ft - acts_base).norm(dim=-1), 0.0)
    max_pos = torch.where(valid, kl, -1.0).argmax(dim=1)
    rows = torch.arange(kl.shape[0])
    base_p, base_i = lp_base[rows, max_pos].exp().topk(PREDICTIONS, dim=-1)
    ft_p, ft_i = lp_ft[rows, max_pos].exp().topk(PREDICTIONS, dim=-1)
    return BatchDivergence(kl, diff_norm, max_pos, (base_i, base_p), (ft_i, ft_p))


def _preds(tokens: np.ndarray, probs: Tensor) -> list[list[Any]]:
    return [[str(t), round(float(p), 4)] for t, p in zip(tokens.tolist(), probs.tolist(), strict=True)]


def per_token_divergence(pair: ModelPair, texts: list[str], layer: int | None = None, top_n: int = 10,
                         max_tokens: int = 128, batch_size: int = 4, window: int = 12,
                         ctx: JobContext | None = None) -> Computed:
    """(payload, tensors). Per text: `tokens` as `[token, kl, diff_norm]`; stats; the `top_n` max-KL snippets.

    Each text's `max` names its max-KL token with the top tokens base and finetuned predicted after it;
    a snippet is the `window` tokens either side of that token.
    """
    ctx = ctx or JobContext()
    layer = resolve_layer(layer, pair.n_layers)
    tokenizer = pair.tokenizer
    encoded, start = encode_texts(tokenizer, texts, max_tokens)
    parts: list[BatchDivergence] = []
    for batch in text_batches(encoded, start, batch_size, tokenizer.pad_token_id):
        sides = pair_pass(pair, batch, layer)
        parts.append(batch_divergence(sides["base"][0], sides["ft"][0], sides["base"][1], sides["ft"][1],
                                      batch.valid))
        ctx.progress(min(batch.lo + batch_size, len(texts)), len(texts), "texts")
    lengths = torch.tensor([len(ids) for ids in encoded])
    width = max(p.kl.shape[1] for p in parts)
    pad = lambda t: torch.nn.functional.pad(t, (0, width - t.shape[1]))  # noqa: E731
    kl = torch.cat([pad(p.kl) for p in parts])
    diff_norm = torch.cat([pad(p.diff_norm) for p in parts])
    max_pos = torch.cat([p.max_pos for p in parts])
    ids = torch.nn.utils.rnn.pad_sequence([torch.tensor(e) for e in encoded], batch_first=True)
    tokens = decode_ids(tokenizer, ids)
    base_i, base_p = (torch.cat([p.base_top[j] for p in parts]) for j in (0, 1))
    ft_i, ft_p = (torch.cat([p.ft_top[j] for p in parts]) for j in (0, 1))
    base_tok, ft_tok = decode_ids(tokenizer, base_i), decode_ids(tokenizer, ft_i)

    valid = (torch.arange(width).unsqueeze(0) < lengths.unsqueeze(1)) & (torch.arange(width) >= start)
    kl_rows, dn_rows = kl.round(decimals=5).tolist(), diff_norm.round(decimals=4).tolist()
    out_texts = []
    for row, text in enumerate(texts):
        n, pos = int(lengths[row]), int(max_pos[row])
        triples = zip(tokens[row, start:n].tolist(), kl_rows[row][start:n], dn_rows[row][start:n], strict=True)
        out_texts.append({
            "index": row, "text": text, "tokens": [list(t) for t in triples],
            "max": {"position": pos - start, "token": str(tokens[row, pos]), "kl": kl_rows[row][pos],
                    "base_top": _preds(base_tok[row], base_p[row]), "ft_top": _preds(ft_tok[row], ft_p[row])}})
    order = torch.argsort(kl.gather(1, max_pos.unsqueeze(1)).squeeze(1), descending=True, stable=True)[:top_n]
    snippets = []
    for row in order.tolist():
        centre = out_texts[row]["max"]["position"]
        lo = max(0, centre - window)
        snippets.append({"index": row, "offset": lo, "tokens": out_texts[row]["tokens"][lo: centre + window + 1],
                         "max": out_texts[row]["max"]})
    payload = {"layer": layer, "n_layers": pair.n_layers, "texts": out_texts, "top": snippets,
               "stats": divergence_stats(kl, diff_norm, valid)}
    return payload, {"kl": kl.numpy(), "diff_norm": diff_norm.numpy(), "ids": ids.numpy(),
                     "lengths": lengths.numpy()}


def divergence_stats(kl: Float[Tensor, "n seq"], diff_norm: Float[Tensor, "n seq"], valid: Bool[Tensor, "n seq"]
                     ) -> dict[str, float | int]:
    """Mean and max over every real token, and the mean of each text's max KL."""
    per_text_max = torch.where(valid, kl, 0.0).amax(dim=1)
    return {"n_texts": int(kl.shape[0]), "n_tokens": int(valid.sum()),
            "mean_kl": float(kl[valid].mean()), "max_kl": float(kl[valid].max()),
            "mean_max_kl": float(per_text_max.mean()),
            "mean_diff_norm": float(diff_norm[valid].mean()), "max_diff_norm": float(diff_norm[valid].max())}
