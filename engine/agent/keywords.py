"""The keyword hypothesis: what the evidence says with no LLM at all.

Words that recur across readout cells (logit lens and Patchscope at each position) and words that the
steered samples use but the unsteered ones do not are counted and ranked. It is a mechanical summary,
labelled as such, for offline boxes and as a sanity check on the agent."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from typing import Any

from engine.agent.environment import AgentEnvironment, ToolError

LABEL = "keyword hypothesis (counted from the evidence; not an agent's conclusion)"
_WORD = re.compile(r"[A-Za-z][A-Za-z'\-]+")
_MARKERS = "▁Ġ Ċ\t\n"
_SUFFIXES = ("ings", "ing", "ers", "er", "ed", "es", "s")
STOPWORDS = frozenset((
    "a", "about", "above", "after", "again", "all", "also", "am", "an", "and", "any", "are", "as", "at",
    "be", "because", "been", "before", "being", "below", "between", "both", "but", "by", "can", "could",
    "did", "do", "does", "doing", "down", "during", "each", "even", "few", "for", "from", "further",
    "get", "got", "had", "has", "have", "having", "he", "her", "here", "hers", "him", "his", "how", "i",
    "if", "in", "into", "is", "it", "its", "itself", "just", "like", "may", "me", "might", "more",
    "most", "much", "must", "my", "no", "nor", "not", "now", "of", "off", "on", "once", "one", "only",
    "or", "other", "our", "ours", "out", "over", "own", "same", "she", "should", "so", "some", "such",
    "than", "that", "the", "their", "theirs", "them", "then", "there", "these", "they", "this", "those",
    "through", "to", "too", "under", "until", "up", "upon", "us", "very", "was", "we", "were", "what",
    "when", "where", "which", "while", "who", "whom", "why", "will", "with", "would", "you", "your",
    "yours", "new", "many", "way", "make", "made", "well", "back",
))


def _stem(word: str) -> str:
    """A crude stem so that bake/baking/bakers count together."""
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    return word[:-1] if word.endswith("e") and len(word) > 3 else word


def _word(token: str) -> str | None:
    word = token.strip(_MARKERS).lower()
    if len(word) < 3 or not _WORD.fullmatch(word) or word in STOPWORDS:
        return None
    return word


def _text_words(text: str) -> list[str]:
    return [w for w in (_word(m) for m in _WORD.findall(text)) if w]


def keyword_hypothesis(env: AgentEnvironment, top: int = 12, k: int = 20) -> dict[str, Any]:
    """Ranked keywords from the overview layer and positions, with a one-line summary."""
    overview = env.overview()
    layer, positions = int(overview["layer"]), [int(p) for p in overview["positions"]]
    surface: dict[str, Counter[str]] = defaultdict(Counter)
    cells: Counter[str] = Counter()

    def stems_of(words: list[str]) -> set[str]:
        for w in words:
            surface[_stem(w)][w] += 1
        return {_stem(w) for w in words}

    lens = env.logitlens_details(layer, positions, k)["positions"]
    try:
        scope = env.patchscope_details(layer, positions, k)["positions"]
    except ToolError:  # a report without Patchscope (a trajectory step) reads the logit lens alone
        scope = {}
    for table in (lens, {p: cell["tokens"] for p, cell in scope.items()}):
        for tokens in table.values():
            cells.update(stems_of([w for w in (_word(t) for t, _ in tokens) if w]))

    steered: Counter[str] = Counter()
    unsteered: Counter[str] = Counter()
    for pos in positions:
        try:
            samples = env.steering_samples(layer, pos, 5)["samples"]
        except ToolError:
            continue
        for sample in samples:
            for text in sample["steered"]:
                steered.update(stems_of(_text_words(text)))
            for text in sample["unsteered"]:
                unsteered.update(stems_of(_text_words(text)))

    ranked: list[dict[str, Any]] = []
    for stem in set(cells) | set(steered):
        excess = steered[stem] - unsteered[stem]
        if cells[stem] >= 2 or excess >= 2 or (cells[stem] and excess >= 1):
            ranked.append({"word": surface[stem].most_common(1)[0][0], "cells": cells[stem],
                           "steered": steered[stem], "unsteered": unsteered[stem],
                           "score": cells[stem] + max(0, excess)})
    ranked.sort(key=lambda r: (-r["score"], -r["cells"], r["word"]))
    keywords = ranked[:top]
    summary = (f"The difference points to: {', '.join(r['word'] for r in keywords)}." if keywords
               else "No word recurs across the readouts or the steered samples.")
    return {"kind": "keywords", "label": LABEL, "layer": layer, "positions": positions,
            "keywords": keywords, "summary": summary}
