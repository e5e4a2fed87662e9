"""Group tokens into topics by meaning: all-MiniLM-L6-v2 embeddings, linked when their cosine reaches a
threshold, topics = connected groups (single linkage), so `bake`, `oven` and `dough` land together."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Int
from torch import Tensor

from engine.readouts.embedding import embed
from engine.readouts.filters import normalise_token

TOPIC_THRESHOLD = 0.5


def topic_labels(tokens: Sequence[str], threshold: float = TOPIC_THRESHOLD) -> Int[Tensor, " n"]:
    """Label per token (the index of the first token of its group)."""
    if not tokens:
        return torch.zeros(0, dtype=torch.long)
    vectors = embed([normalise_token(t) or t for t in tokens])
    reach = (vectors @ vectors.T) >= threshold
    while True:  # transitive closure by squaring: at most log2(n) rounds
        grown = (reach.float() @ reach.float()) > 0
        if torch.equal(grown, reach):
            break
        reach = grown
    return reach.float().argmax(dim=1)


def group_topics(tokens: Sequence[str], weights: Sequence[int], threshold: float = TOPIC_THRESHOLD
                 ) -> list[dict[str, object]]:
    """Topics, heaviest first: `{"tokens": [...], "count": summed weight}`."""
    labels = topic_labels(tokens, threshold).tolist()
    groups: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        groups.setdefault(label, []).append(index)
    topics = [{"tokens": [tokens[i] for i in members], "count": int(sum(weights[i] for i in members))}
              for members in groups.values()]
    return sorted(topics, key=lambda t: -t["count"])  # type: ignore[operator]
