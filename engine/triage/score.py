"""The trace-strength score of a triage report: how strong and how readable the finetuning trace is.

    score = s · (1 + c + h) / 3        (without steering: s · (1 + c) / 2), in [0, 1)

- s = N / (N + 0.1), where N is the peak relative diff norm ‖Δ‖/‖base‖ over layers from a quarter of
  the depth on and positions after the first (position 0 carries an outsized vector in most models);
- c = concentration of the logit lens of the mean diff over those cells: the share of each cell's top-k
  probability mass on the five non-trivial tokens (words, not punctuation, stopwords or special
  tokens) that recur in at least two cells and carry the most mass, averaged over cells;
- h = steering coherence at the calibrated strength: the share of coherent steered samples at each
  position's calibrated α (0 where no strength was coherent), averaged over positions after the first.

An identical pair has N = 0, hence score 0; a pair whose diff is large and reads as a few recurring
words that steer coherently approaches 1. Readability (c, h) only scales a trace that exists (s).
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

from engine.agent.keywords import STOPWORDS

README = ("Trace strength = s·(1 + c + h)/3 with s = N/(N + 0.1), N the peak ‖Δ‖/‖base‖ over layers from a "
          "quarter of the depth on and positions after the first, c the share of the diff's logit-lens mass "
          "(top-k per cell) on its five recurring non-trivial tokens, and h the share of coherent steered "
          "samples at the calibrated α (dropped, as (1 + c)/2, when steering is off); an identical pair "
          "scores 0.")
HALF_NORM = 0.1
TOP_TOKENS = 5
_MARKERS = "▁Ġ Ċ\t\n\r"
_ALNUM = re.compile(r"[^\W_]", re.UNICODE)


def trace_strength(report: dict[str, Any]) -> dict[str, Any]:
    """`{"score", "peak_rel_norm", "peak_cell", "concentration", "coherence", "tokens"}` for a report."""
    cells = _cells(report)
    peak, where = max(((float(cell["rel_norm"]), key) for key, cell in cells.items()), default=(0.0, None))
    strength = peak / (peak + HALF_NORM)
    concentration, tokens = _concentration([cells[key]["logit_lens"] for key in sorted(cells)])
    coherence = _coherence(report.get("steering") or {})
    readability = (1 + concentration) / 2 if coherence is None else (1 + concentration + coherence) / 3
    score = strength * readability
    return {"score": round(score, 4), "peak_rel_norm": round(peak, 4),
            "peak_cell": {"layer": where[0], "pos": where[1]} if where and peak > 0 else None,
            "concentration": round(concentration, 4),
            "coherence": None if coherence is None else round(coherence, 4), "tokens": tokens}


def _cells(report: dict[str, Any]) -> dict[tuple[int, int], dict[str, Any]]:
    """Cells at layers ≥ n_layers/4 and positions ≥ 1 (position 0 too when it is the only one)."""
    n_layers, k = int(report["n_layers"]), int(report["k"])
    first_pos = 1 if k > 1 else 0
    return {(int(layer), int(pos)): cell for layer, row in report["layers"].items() for pos, cell in row.items()
            if int(layer) >= n_layers // 4 and int(pos) >= first_pos}


def _token_key(token: str) -> str | None:
    """A word-like token, lower-cased; None for punctuation, digits-only, stopwords and special tokens."""
    word = token.strip(_MARKERS).lower()
    if len(_ALNUM.findall(word)) < 2 or not any(ch.isalpha() for ch in word) or word in STOPWORDS:
        return None
    if word.startswith("<") and word.endswith(">"):
        return None
    return word


def _concentration(cells: list[list[list[Any]]]) -> tuple[float, list[str]]:
    """Mean over cells of the share of the cell's top-k mass on the top recurring non-trivial tokens."""
    shares: list[dict[str, float]] = []
    seen_in: dict[str, int] = defaultdict(int)
    mass: dict[str, float] = defaultdict(float)
    for tokens in cells:
        total = sum(float(p) for _, p in tokens)
        share: dict[str, float] = defaultdict(float)
        for token, p in tokens:
            if (key := _token_key(str(token))) is not None and total > 0:
                share[key] += float(p) / total
        for key, value in share.items():
            seen_in[key] += 1
            mass[key] += value
        shares.append(share)
    recurring = sorted((key for key in mass if seen_in[key] >= 2), key=lambda key: (-mass[key], key))[:TOP_TOKENS]
    if not shares or not recurring:
        return 0.0, recurring
    return min(1.0, sum(sum(s.get(key, 0.0) for key in recurring) for s in shares) / len(shares)), recurring


def _coherence(steering: dict[str, Any]) -> float | None:
    """Mean coherent share at each position's calibrated strength (positions ≥ 1 when there are others)."""
    if not steering:
        return None
    positions = [p for p in steering if int(p) >= 1] or list(steering)
    values = []
    for pos in positions:
        cell = steering[pos]
        strength = float(cell.get("strength") or 0.0)
        at = [float(share) for s, share in cell.get("coherence") or [] if float(s) == strength]
        values.append(at[0] if strength > 0 and at else 0.0)
    return sum(values) / len(values)
