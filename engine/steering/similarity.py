"""Steering similarity: do steered samples read more like the finetuning data than unsteered ones?"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from engine.readouts.embedding import embed


@dataclass
class SteeringSimilarity:
    """Mean cosine (all-MiniLM-L6-v2) of samples to finetuning texts; `gain` = steered − unsteered."""

    steered: float
    unsteered: float

    @property
    def gain(self) -> float:
        return self.steered - self.unsteered


def mean_cosine(texts: Sequence[str], references: Sequence[str]) -> float:
    """Mean over all (text, reference) pairs of their embedding cosine."""
    if not texts or not references:
        raise ValueError("steering similarity needs samples and finetuning texts")
    return float((embed(texts) @ embed(references).T).mean())


def steering_similarity(steered: Sequence[str], unsteered: Sequence[str],
                        finetune_texts: Sequence[str]) -> SteeringSimilarity:
    return SteeringSimilarity(steered=mean_cosine(steered, finetune_texts),
                              unsteered=mean_cosine(unsteered, finetune_texts))
