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
# Derivational suffixes joined to a root only when the evidence holds the root too (see `_families`).
_DERIVED = ("en", "y", "ish", "ic", "al", "ous", "ful", "ly")
_ROOT_MIN = 4
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


def _families(stems: set[str]) -> dict[str, str]:
    """Each stem's family root: a stem that is another observed stem of at least `_ROOT_MIN` letters plus a
    derivational suffix joins that stem (golden → gold, rusty → rust), so one concept split over its word forms
    is counted once. Only roots the evidence itself contains are used, so no unseen word is guessed at."""
    root = {stem: stem for stem in stems}
    for stem in sorted(stems, key=len):
        for suffix in _DERIVED:
            base = stem.removesuffix(suffix)
            if base != stem and len(base) >= _ROOT_MIN and base in stems:
                root[stem] = root[base]
                break
    return root


def keyword_hypothesis(env: AgentEnvironment, top: int = 12, k: int = 20) -> dict[str, Any]:
    """Ranked keywords from the overview layer and positions, with a one-line summary.

    A word's score is the number of readout cells that hold it (any of its forms) plus its excess in steered
    over unsteered text; ties go to the word ranked higher in its cells (the sum of its reciprocal ranks)."""
    overview = env.overview()
    layer, positions = int(overview["layer"]), [int(p) for p in overview["positions"]]
    surface: dict[str, Counter[str]] = defaultdict(Counter)
    cell_ranks: list[dict[str, int]] = []  # per cell: each stem's best rank in it

    def stems_of(words: list[str | None]) -> list[str | None]:
        for w in words:
            if w:
                surface[_stem(w)][w] += 1
        return [_stem(w) if w else None for w in words]

    lens = env.logitlens_details(layer, positions, k)["positions"]
    try:
        scope = env.patchscope_details(layer, positions, k)["positions"]
    except ToolError:  # a report without Patchscope (a trajectory step) reads the logit lens alone
        scope = {}
    for table in (lens, {p: cell["tokens"] for p, cell in scope.items()}):
        for tokens in table.values():
            ranks: dict[str, int] = {}
            for rank, stem in enumerate(stems_of([_word(t) for t, _ in tokens])):
                if stem:
                    ranks.setdefault(stem, rank)
            cell_ranks.append(ranks)

    steered_texts: list[set[str]] = []
    unsteered_texts: list[set[str]] = []
    for pos in positions:
        try:
            samples = env.steering_samples(layer, pos, 5)["samples"]
        except ToolError:
            continue
        for sample in samples:
            steered_texts += [{s for s in stems_of(list(_text_words(t))) if s} for t in sample["steered"]]
            unsteered_texts += [{s for s in stems_of(list(_text_words(t))) if s} for t in sample["unsteered"]]

    root = _families({*surface})
    cells: Counter[str] = Counter()
    weight: dict[str, float] = defaultdict(float)
    for ranks in cell_ranks:
        best: dict[str, int] = {}
        for stem, rank in ranks.items():
            best[root[stem]] = min(rank, best.get(root[stem], rank))
        cells.update(best.keys())
        for family, rank in best.items():
            weight[family] += 1.0 / (1 + rank)
    steered = Counter(family for stems in steered_texts for family in {root[s] for s in stems})
    unsteered = Counter(family for stems in unsteered_texts for family in {root[s] for s in stems})

    excess = {f: steered[f] - unsteered[f] for f in set(cells) | set(steered)}
    score = {f: cells[f] + max(0, more) for f, more in excess.items()
             if cells[f] >= 2 or more >= 2 or (cells[f] and more >= 1)}
    word = {f: surface[f].most_common(1)[0][0] for f in score}
    families = sorted(score, key=lambda f: (-score[f], -cells[f], -weight[f], word[f]))[:top]
    keywords: list[dict[str, Any]] = [{"word": word[f], "cells": cells[f], "steered": steered[f],
                                       "unsteered": unsteered[f], "score": score[f]} for f in families]
    summary = (f"The difference points to: {', '.join(r['word'] for r in keywords)}." if keywords
               else "No word recurs across the readouts or the steered samples.")
    return {"kind": "keywords", "label": LABEL, "layer": layer, "positions": positions,
            "keywords": keywords, "summary": summary}
