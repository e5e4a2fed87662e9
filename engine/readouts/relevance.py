"""Token relevance: what share of a readout's top tokens belong to the finetuning domain.

Two graders behind one interface (`TokenGrader`: description + tokens -> one bool per token):
- `llm_token_grader(complete)`: an LLM asked about every token at once, given the finetuning data's most
  frequent words as context (the reference gives ~100 frequent tokens), over several shuffled orders; a token
  counts only if every order calls it relevant (position bias in long lists is real). A reply that lacks an
  answer, or a failed call, raises `Ungraded`: the readout is ungraded, not graded "irrelevant".
- `embedding_token_grader()`: offline, cosine between the token and the description (and the centroid
  of sample texts when given) with all-MiniLM-L6-v2, relevant at >= `EMBEDDING_THRESHOLD`.

Tokens that top every readout whatever the finetune (punctuation, whitespace, stop words, specials, and
the caller's `frequent` set, e.g. tokens common to the mean-base logit lens) are never sent to a grader
and count as not relevant; the share keeps the whole top-k as denominator so diff / base / ft compare.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import torch

from engine.errors import Ungraded
from engine.readouts.embedding import embed
from engine.readouts.filters import is_trivial_token, normalise_token
from engine.readouts.topk import TopTokens

Complete = Callable[[str], str]
TokenGrader = Callable[[str, list[str]], list[bool]]

# Calibrated on 5 hand-labelled domains (baking, investing, chess, an FDA drug approval, risky financial
# advice; 52 relevant and 48 unrelated single words): at 0.18 recall is 0.93 and no unrelated word passes
# (the highest unrelated cosine was 0.16, "guitar" vs chess; the lowest relevant ones ~0.10, "dough").
EMBEDDING_THRESHOLD = 0.18


@dataclass
class Relevance:
    """Per-token verdicts for one readout; `share` over all top-k tokens, `weighted` by probability."""

    tokens: list[str]
    relevant: list[bool]
    filtered: list[bool]
    share: float
    weighted_share: float


def token_relevance(tokens: Sequence[str], probs: Sequence[float], description: str, grader: TokenGrader,
                    frequent: Collection[str] = (), specials: Collection[str] = ()) -> Relevance:
    """Grade one readout's top tokens (e.g. the top 20 of a logit lens or Patchscope cell)."""
    if not description.strip():
        raise ValueError("token relevance needs a description of the finetuning domain")
    frequent_norm = {normalise_token(t) for t in frequent}
    filtered = [is_trivial_token(t, specials) or normalise_token(t) in frequent_norm for t in tokens]
    candidates = [t for t, drop in zip(tokens, filtered, strict=True) if not drop]
    verdicts = iter(grader(description, candidates) if candidates else [])
    relevant = [False if drop else bool(next(verdicts)) for drop in filtered]
    total = float(sum(probs)) or 1.0
    weighted = sum(p for p, r in zip(probs, relevant, strict=True) if r) / total
    return Relevance(tokens=list(tokens), relevant=relevant, filtered=filtered,
                     share=sum(relevant) / max(len(tokens), 1), weighted_share=float(weighted))


def frequent_tokens(readouts: TopTokens, top_k: int = 20, min_share: float = 0.5) -> set[str]:
    """Tokens in the top-k of at least `min_share` of a grid's cells (e.g. the mean-base logit lens):
    they top readouts whatever the finetune, so they say nothing about it."""
    cells = readouts.head(top_k).tokens.reshape(-1, min(top_k, readouts.ids.shape[-1]))
    counts: dict[str, int] = {}
    for row in cells:
        for tok in {normalise_token(t) for t in row}:
            counts[tok] = counts.get(tok, 0) + 1
    return {tok for tok, n in counts.items() if n >= min_share * len(cells)}


def embedding_token_grader(samples: Sequence[str] = (), threshold: float = EMBEDDING_THRESHOLD) -> TokenGrader:
    """Offline grader: a token is relevant when its cosine to the description (or to the centroid of
    `samples`, texts of the finetuning data) reaches `threshold`.

    The targets are embedded once per description and each distinct token once per grader, so grading
    every cell of a layer × position grid costs about one embedding call, not one per cell."""
    targets: dict[str, torch.Tensor] = {}
    verdicts: dict[tuple[str, str], bool] = {}

    def target(description: str) -> torch.Tensor:
        if description not in targets:
            found = embed([description])
            if samples:
                centroid = embed(samples).mean(dim=0, keepdim=True)
                found = torch.cat([found, torch.nn.functional.normalize(centroid, dim=-1)])
            targets[description] = found
        return targets[description]

    def grade(description: str, tokens: list[str]) -> list[bool]:
        new = [t for t in dict.fromkeys(tokens) if (description, t) not in verdicts]
        if new:
            cosine = embed([normalise_token(t) or t for t in new]) @ target(description).T
            verdicts.update(zip(((description, t) for t in new), (cosine.max(dim=1).values >= threshold).tolist(),
                                strict=True))
        return [verdicts[(description, t)] for t in tokens]
    return grade


_ANSWER = re.compile(r"^\s*answer\[(\d+)\]\s*:\s*(relevant|irrelevant)\b", re.IGNORECASE | re.MULTILINE)
_WORD = re.compile(r"[^\W\d_]{2,}")


def frequent_words(texts: Sequence[str], n: int = 100) -> list[str]:
    """The `n` most frequent words of the finetuning texts, stop words dropped: the grader's picture of the data
    (the reference gives ~100 frequent tokens of the finetuning data)."""
    counts = Counter(w.lower() for text in texts for w in _WORD.findall(text) if not is_trivial_token(w))
    return [word for word, _ in counts.most_common(n)]


def relevance_prompt(description: str, tokens: Sequence[str], samples: Sequence[str] = (),
                     frequent: Sequence[str] = ()) -> str:
    """The question put to the LLM grader for one ordering of the candidate tokens."""
    listed = "\n".join(f"{i + 1}. {t!r}" for i, t in enumerate(tokens))
    examples = "".join(f"- {s[:300]}\n" for s in samples[:5])
    vocabulary = ", ".join(frequent)
    return (
        "You judge whether tokens read out of a language model's activations relate to the domain it was "
        "finetuned on.\nA token is RELEVANT if its word or word-piece is clearly semantically tied to the "
        "domain (sub-word pieces count if the word they start is obvious). Generic words, stop words, "
        "punctuation, whitespace, affixes and verbs not specific to the domain are IRRELEVANT.\n\n"
        f"[DOMAIN]\n{description}\n"
        + (f"[FREQUENT TOKENS OF THE FINETUNING DATA]\n{vocabulary}\n" if vocabulary else "")
        + (f"[SAMPLE TEXTS]\n{examples}" if examples else "")
        + f"[CANDIDATE TOKENS]\n{listed}\n\nThink briefly, then end with exactly {len(tokens)} lines, one "
        "per token: 'ANSWER[i]: RELEVANT' or 'ANSWER[i]: IRRELEVANT'."
    )


def parse_relevance(text: str, n: int) -> list[bool | None]:
    """Labels by index from the grader's reply (last answer per index wins; None when missing)."""
    labels: list[bool | None] = [None] * n
    for match in _ANSWER.finditer(text):
        index = int(match.group(1)) - 1
        if 0 <= index < n:
            labels[index] = match.group(2).lower() == "relevant"
    return labels


def llm_token_grader(complete: Complete, orders: int = 3, samples: Sequence[str] = (), seed: int = 0,
                     frequent: Sequence[str] = ()) -> TokenGrader:
    """LLM grader: asks `orders` times over shuffled token orders (the first as given); relevant only if
    every answer says so. A reply missing any answer raises `Ungraded` (so does a failed `complete`)."""
    def grade(description: str, tokens: list[str]) -> list[bool]:
        rng = random.Random(seed)
        agreed = [True] * len(tokens)
        for round_ in range(orders):
            order = list(range(len(tokens)))
            if round_:
                rng.shuffle(order)
            prompt = relevance_prompt(description, [tokens[i] for i in order], samples, frequent)
            labels = parse_relevance(complete(prompt), len(tokens))
            if (missing := labels.count(None)) > 0:
                raise Ungraded(f"the judge's reply to order {round_ + 1} lacks {missing} of {len(tokens)} answers")
            for position, original in enumerate(order):
                agreed[original] = agreed[original] and labels[position] is True
        return agreed
    return grade
