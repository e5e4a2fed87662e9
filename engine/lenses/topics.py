"""Topics of diff mining, as the authors' toolkit finds them: a non-negative factorisation of the position × token
matrix V, where V[p, t] is how far the finetune pushed token t up at position p (its (ft − base) log-prob
difference when t made that position's top-K, else 0).

V ≈ H Wᵀ with H ≥ 0 (position × topic) and W ≥ 0 (token × topic), fitted by the multiplicative updates for the
Frobenius loss (the toolkit's β = 2). The start is deterministic: each topic begins as the row of V least like
the rows already taken (the longest first), so two separate contexts do not start in one topic, which the
updates could not undo (a zero stays zero). Tokens pushed up in the same contexts share a topic;
a topic's tokens are its largest W entries, its positions those where it contributes most. V is sparse (K
entries per position), so the fit never builds the dense matrix.
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from engine.protocol.methods import LensMine
from engine.readouts.filters import is_trivial_token
from engine.readouts.topk import decode_ids

DEFAULT_TOPICS = LensMine.n_topics
NMF_ITERATIONS = 200
TOKENS_PER_TOPIC = 8
_EPS = 1e-9


def position_token_matrix(top_ids: Int[Tensor, "pos top"], top_vals: Float[Tensor, "pos top"]
                          ) -> tuple[Tensor, Int[Tensor, " tokens"]]:
    """(sparse V [pos, tokens], the token id of each column): the positive top-K differences per position."""
    columns, inverse = torch.unique(top_ids.reshape(-1), return_inverse=True)
    rows = torch.arange(top_ids.shape[0]).repeat_interleave(top_ids.shape[1])
    values = top_vals.reshape(-1).float().clamp_min(0.0)
    keep = values > 0
    v = torch.sparse_coo_tensor(torch.stack([rows[keep], inverse[keep]]), values[keep],
                                (top_ids.shape[0], len(columns))).coalesce()
    return v, columns


def spread_rows(v: Tensor, rank: int) -> Float[Tensor, "tokens rank"]:
    """`rank` rows of V as columns: the longest row, then each time the row least like those taken (cosine)."""
    norms = torch.sparse.sum(v * v, dim=1).to_dense().sqrt()
    picked = [int(norms.argmax())]
    while len(picked) < rank:
        taken = v.index_select(0, torch.tensor(picked)).to_dense().T
        likeness = (torch.sparse.mm(v, taken) / (norms.unsqueeze(1) * taken.norm(dim=0) + _EPS)).amax(dim=1)
        picked.append(int(torch.where(norms > 0, likeness, torch.inf).argmin()))
    return v.index_select(0, torch.tensor(picked)).to_dense().T


def nmf(v: Tensor, rank: int, iterations: int = NMF_ITERATIONS, seed: int = 0
        ) -> tuple[Float[Tensor, "tokens rank"], Float[Tensor, "pos rank"]]:
    """(W, H) with V ≈ H Wᵀ, both non-negative: Lee–Seung multiplicative updates for ‖V − H Wᵀ‖² from
    `spread_rows` (a little seeded noise lets every token enter every topic)."""
    n, m = v.shape
    generator = torch.Generator().manual_seed(seed)
    scale = float(v.values().mean()) if v.values().numel() else 1.0
    w = spread_rows(v, rank) + 0.01 * scale * torch.rand(m, rank, generator=generator) + _EPS
    h = torch.rand(n, rank, generator=generator) + _EPS
    vt = v.t().coalesce()
    for _ in range(iterations):
        h *= torch.sparse.mm(v, w) / (h @ (w.T @ w) + _EPS)
        w *= torch.sparse.mm(vt, h) / (w @ (h.T @ h) + _EPS)
    return w, h


def nmf_topics(top_ids: Int[Tensor, "pos top"], top_vals: Float[Tensor, "pos top"], tokenizer: Any,
               n_topics: int = DEFAULT_TOPICS, seed: int = 0) -> list[dict[str, Any]]:
    """Topics, most prevalent first: `{"tokens", "weights", "count", "share"}`; `count` is the number of positions
    the topic contributes most to. Trivial tokens (punctuation, whitespace, specials) are not listed."""
    v, columns = position_token_matrix(top_ids, top_vals)
    if v.values().numel() == 0:
        return []
    rank = min(n_topics, *v.shape)
    w, h = nmf(v, rank, seed=seed)
    mass = w.sum(dim=0)
    pushed = (top_vals > 0).any(dim=1)  # positions with anything pushed up
    counts = torch.bincount((h * mass).argmax(dim=1)[pushed], minlength=rank)
    names = decode_ids(tokenizer, columns).tolist()
    specials = tokenizer.all_special_tokens
    topics = []
    for r in range(rank):
        order = [int(i) for i in w[:, r].argsort(descending=True) if w[int(i), r] > _EPS * 10]
        kept = [i for i in order if not is_trivial_token(names[i], specials)][:TOKENS_PER_TOPIC]
        if kept:
            top = float(w[kept[0], r])
            topics.append({"tokens": [names[i] for i in kept],
                           "weights": [round(float(w[i, r]) / top, 3) for i in kept], "count": int(counts[r]),
                           "share": round(int(counts[r]) / v.shape[0], 4)})
    return sorted(topics, key=lambda t: -t["count"])
