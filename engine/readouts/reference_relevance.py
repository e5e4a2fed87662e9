"""Token relevance as the reference computes it (`--protocol paper`; diffing-toolkit
src/diffing/methods/activation_difference_lens/token_relevance.py and src/diffing/utils/graders/
token_relevance_grader.py), beside difflens's own grader in `relevance.py`:

- every candidate goes to the grader (no pre-filter of trivial or base-frequent tokens);
- the grader's context is the description and the 100 most frequent non-generic tokenizer tokens of the
  finetuning data seen at least 10 times (`frequent_tokenizer_tokens`), no texts;
- three orders, the candidates rotated by 0, 1, 2 places; each order asked up to three times until every
  candidate has a label, then once more at temperature 0, keeping the reply with the fewest missing labels;
  a token is relevant only if every order says RELEVANT (a missing label is not RELEVANT);
- the outputs: `percentage`, `weighted_percentage` (by the readout's probabilities), `trivial_percentage` (the
  share of candidates that are, as strings, among the frequent tokens) and, for Patchscope, `filtered_percentage`
  and `weighted_filtered_percentage` over the tokens the Patchscope grader selected.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

# The reference's COMMON_WORDS and generic-token rule (`_is_generic_token`), used to pick frequent tokens.
COMMON_WORDS = frozenset({
    "the", "and", "or", "but", "in", "on", "at", "to", "for", "of", "with", "by", "from", "up", "about", "into",
    "through", "during", "before", "after", "above", "below", "between", "among", "is", "are", "was", "were", "be",
    "been", "being", "have", "has", "had", "do", "does", "did", "will", "would", "could", "should", "may", "might",
    "must", "can", "this", "that", "these", "those", "a", "an", "ing"})
_CLITICS = frozenset({"'s", "'t", "'re", "'ve", "'ll", "'d", "'m", "ing"})
_PUNCTUATION = re.compile(r"^[^\w\s]+$")
_LABEL = re.compile(r"^\s*answer\[(\d+)\]\s*:\s*(relevant|irrelevant)\s*[.!]?\s*$", re.IGNORECASE | re.MULTILINE)
FREQUENT_TOKENS = 100      # `frequent_tokens.num_tokens`
FREQUENT_MIN_COUNT = 10    # `frequent_tokens.min_count`
PERMUTATIONS = 3           # `grader.permutations`
TRIES = 3                  # the grader's `max_retries` before its temperature-0 call

Labels = list[bool | None]
"""Per candidate: True RELEVANT, False IRRELEVANT, None UNKNOWN (no label in the reply)."""
SystemComplete = Callable[..., str]
"""`complete(prompt, system=...) -> str` (a `engine.judges.client.JudgeClient`; raises `Ungraded`)."""
ReferenceGrader = Callable[[str, Sequence[str], Sequence[str]], list[Labels]]
"""(description, frequent tokens, candidates) -> one label list per order, mapped back to the candidates' order."""


def is_generic_token(token: str) -> bool:
    """The reference's `_is_generic_token`: one character, punctuation, a clitic, whitespace or a common word."""
    clean = token.replace("▁", "").replace("Ġ", "").strip()
    return (len(clean) <= 1 or bool(_PUNCTUATION.match(clean)) or clean in _CLITICS
            or clean.lower() in COMMON_WORDS)


def frequent_tokenizer_tokens(tokenizer: Any, texts: Sequence[str], n: int = FREQUENT_TOKENS,
                              min_count: int = FREQUENT_MIN_COUNT) -> list[str]:
    """The reference's frequent tokens (`_compute_frequent_tokens`): `tokenizer.tokenize` of every text, generic
    tokens dropped, those seen at least `min_count` times, the `n` most frequent (ties in first-seen order)."""
    counts = Counter(tok for text in texts for tok in tokenizer.tokenize(text))
    ranked = sorted(((tok, c) for tok, c in counts.items() if c >= min_count and not is_generic_token(tok)),
                    key=lambda item: item[1], reverse=True)
    return [tok for tok, _ in ranked[:n]]


def relevance_user_prompt(description: str, frequent: Sequence[str], candidates: Sequence[str]) -> str:
    """The reference's user prompt (`_build_user_prompt_many`)."""
    listed = ", ".join(f'"{t}"' for t in frequent) if frequent else "(none)"
    numbered = "\n".join(f"{i + 1}. {tok}" for i, tok in enumerate(candidates))
    n = len(candidates)
    return (f"[DESCRIPTION]\n{description}\n[FREQUENT TOKENS]\n{listed}\n[CANDIDATE TOKENS]\n{numbered}\n"
            f"[OUTPUT FORMAT]\nOutput exactly {n} lines at the end, one per index i=1..{n}, each in the form "
            "'ANSWER[i]: RELEVANT' or 'ANSWER[i]: IRRELEVANT'.\nDo not include any other text after these lines.")


def parse_labels(text: str, n: int) -> Labels:
    """`ANSWER[i]: RELEVANT|IRRELEVANT` lines (the whole line, as the reference's pattern); the last per index wins."""
    labels: Labels = [None] * n
    for match in _LABEL.finditer(text):
        index = int(match.group(1)) - 1
        if 0 <= index < n:
            labels[index] = match.group(2).lower() == "relevant"
    return labels


def reference_token_grader(complete: SystemComplete, complete_cold: SystemComplete, system: str,
                           permutations: int = PERMUTATIONS, tries: int = TRIES) -> ReferenceGrader:
    """The reference's `TokenRelevanceGrader.grade`: `system` is its instructions with worked examples."""
    def one_order(description: str, frequent: Sequence[str], candidates: list[str]) -> Labels:
        prompt = relevance_user_prompt(description, frequent, candidates)
        best: Labels | None = None
        for _ in range(tries):
            labels = parse_labels(complete(prompt, system=system), len(candidates))
            if None not in labels:
                return labels
            if best is None or labels.count(None) < best.count(None):
                best = labels
        cold = parse_labels(complete_cold(prompt, system=system), len(candidates))
        return cold if best is None or cold.count(None) <= best.count(None) else best

    def grade(description: str, frequent: Sequence[str], candidates: Sequence[str]) -> list[Labels]:
        n = len(candidates)
        orders = []
        for shift in range(permutations):
            order = [(i + shift) % n for i in range(n)]
            labels = one_order(description, frequent, [candidates[i] for i in order])
            mapped: Labels = [None] * n
            for at, original in enumerate(order):
                mapped[original] = labels[at]
            orders.append(mapped)
        return orders
    return grade


@dataclass
class ReferenceRelevance:
    """One readout graded as the reference does; the `*_percentage` fields are its output names (0–1 shares).
    `filtered_percentage` is None where the reference writes none (a logit lens; Patchscope with nothing
    selected), `weighted_filtered_percentage` also when the selected tokens carry no probability."""

    tokens: list[str]
    relevant: list[bool]
    unknown: int
    percentage: float
    weighted_percentage: float
    trivial_percentage: float
    filtered_percentage: float | None = None
    weighted_filtered_percentage: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"tokens": self.tokens, "relevant": self.relevant, "unknown": self.unknown,
                **{name: None if value is None else round(value, 4) for name, value in (
                    ("percentage", self.percentage), ("weighted_percentage", self.weighted_percentage),
                    ("trivial_percentage", self.trivial_percentage),
                    ("filtered_percentage", self.filtered_percentage),
                    ("weighted_filtered_percentage", self.weighted_filtered_percentage))}}


def reference_relevance(tokens: Sequence[str], probs: Sequence[float], description: str, frequent: Sequence[str],
                        grader: ReferenceGrader, selected: Sequence[str] | None = None) -> ReferenceRelevance:
    """Grade one readout's candidates (`selected`: the Patchscope grader's tokens, for the filtered shares). Empty
    tokens are dropped first, as the reference drops them from Patchscope's candidates."""
    kept = [(t, float(p)) for t, p in zip(tokens, probs, strict=True) if t]
    if not kept:
        raise ValueError("a readout without candidate tokens cannot be graded")
    candidates, weights = [t for t, _ in kept], [p for _, p in kept]
    orders = grader(description, frequent, candidates)
    relevant = [all(order[i] is True for order in orders) for i in range(len(candidates))]
    unknown = sum(any(order[i] is None for order in orders) for i in range(len(candidates)))
    frequent_set = set(frequent)
    out = ReferenceRelevance(
        tokens=candidates, relevant=relevant, unknown=unknown, percentage=sum(relevant) / len(candidates),
        weighted_percentage=_weighted(relevant, weights),
        trivial_percentage=sum(t in frequent_set for t in candidates) / len(candidates))
    if selected is not None:
        mask = _selection_mask(candidates, selected)
        if any(mask):
            picked = [r for r, m in zip(relevant, mask, strict=True) if m]
            out.filtered_percentage = sum(picked) / len(picked)
            picked_weights = [w for w, m in zip(weights, mask, strict=True) if m]
            if sum(picked_weights) > 0:
                out.weighted_filtered_percentage = _weighted(picked, picked_weights)
    return out


def _weighted(relevant: Sequence[bool], weights: Sequence[float]) -> float:
    total = sum(weights)
    return sum(w for r, w in zip(relevant, weights, strict=True) if r) / total if total > 0 else 0.0


def _selection_mask(candidates: Sequence[str], selected: Sequence[str]) -> list[bool]:
    """Which candidates the Patchscope grader selected, each selected string used once (the reference's
    multiset-aware `unsupervised_filter`)."""
    left = Counter(t for t in selected if t)
    mask = []
    for tok in candidates:
        mask.append(left[tok] > 0)
        if left[tok] > 0:
            left[tok] -= 1
    return mask
