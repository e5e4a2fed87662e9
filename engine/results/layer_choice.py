"""Which layer the report reads, chosen from the run's own evidence without knowing what the finetune was.

The paper reads at relative depth 0.5, but where a finetune's trace is readable varies with the model and
the recipe (on the mixed cake demo the middle layer reads noise while the upper layers read baking).

Criterion, per layer, from what every run already has (the cached logit lens of the mean diff and of the
mean base activation, and ‖Δ‖/‖base‖):
- positions 1..k−1 (position 0 carries an outsized, odd vector; it is used only when k == 1);
- per position the top-`top_k` diff-lens tokens, minus trivial tokens (punctuation, stop words, specials)
  and tokens frequent in the base lens (they top readouts whatever the finetune); case and word-start
  markers merged;
- each remaining token gets its probability mass (summed over the positions) and its recurrence (share of
  the positions whose top-k hold it);
- relatedness = mass-weighted mean pairwise cosine of the tokens' MiniLM embeddings (how much they are about
  one thing; a lone token has no pairs and scores nothing);
- recurrence = mass-weighted mean recurrence (one story at every position, not per-position noise);
- kept = share of the top-k probability mass that survives the filter;
- strength = min(1, r / (`strength_floor` · r_max)), r the layer's ‖Δ‖/‖base‖ (mean over the positions) and
  r_max the run's largest: a layer whose diff is a sliver of the strongest one reads a direction the finetune
  barely moved, whatever its tokens;
- score = relatedness × recurrence × kept × strength.

The best-scoring layer wins; layers within `near_tie` (a fraction) of the best count as tied and the one
nearest the paper's middle layer is taken. A run with no difference at all (an identical pair) reads the
middle layer. Nothing here names a domain, a token or a model: the same rule runs on any pair. Its limit:
MiniLM is an English sentence embedder, so one concept spelled in several languages (Baked, cottura, horno)
looks less related than it is.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Final, Literal

import numpy as np
import torch

from engine.adl.runs import AdlRun
from engine.errors import UserError
from engine.readouts.embedding import embed
from engine.readouts.filters import is_trivial_token, normalise_token
from engine.readouts.relevance import frequent_tokens
from engine.results.readout_cells import Grid, default_head, lens_grid
from store import results

KIND = "layerchoice"
MIDDLE: Final = "middle"
By = Literal["criterion", "user", "middle"]


@dataclass(frozen=True)
class Criterion:
    """The criterion's parameters (all part of the cache key)."""

    top_k: int = 20
    near_tie: float = 0.1
    strength_floor: float = 0.5
    version: int = 2


@dataclass
class LayerChoice:
    """The report layer, how it was chosen, and every layer's score (with its parts) to show why."""

    layer: int
    by: By
    middle: int
    scores: dict[int, float]
    parts: dict[int, dict[str, float]]
    criterion: Criterion

    def to_json(self) -> dict[str, Any]:
        return {"layer": self.layer, "by": self.by, "middle": self.middle,
                "scores": {str(lay): s for lay, s in self.scores.items()},
                "parts": {str(lay): p for lay, p in self.parts.items()}, "criterion": asdict(self.criterion)}


def parse_layer(value: Any) -> int | Literal["middle"] | None:
    """What the user asked for: None (choose), `middle`, or a layer number (int or digits)."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text == MIDDLE:
            return MIDDLE
        if text.lstrip("-").isdigit():
            return int(text)
    raise UserError(f"layer {value!r} is neither a number nor 'middle'",
                    "pass --layer N (a decoder layer), --layer middle, or leave it out to choose from the evidence")


def choose_layer(run: AdlRun, requested: int | Literal["middle"] | None = None,
                 criterion: Criterion | None = None) -> LayerChoice:
    """The report layer: `requested` when given (a number or `middle`), else the criterion's pick.

    The per-layer scores are always computed (and cached), so a report shows them whoever chose."""
    criterion = criterion or Criterion()
    if isinstance(requested, int):
        run.layer_index(requested)  # refused before anything is computed
    scores, parts = layer_scores(run, criterion)
    middle = run.middle_layer
    if requested == MIDDLE:
        return LayerChoice(middle, "middle", middle, scores, parts, criterion)
    if isinstance(requested, int):
        return LayerChoice(int(run.layers[run.layer_index(requested)]), "user", middle, scores, parts, criterion)
    best = max(scores.values(), default=0.0)
    if best <= 0:
        return LayerChoice(middle, "middle", middle, scores, parts, criterion)
    tied = [lay for lay, s in scores.items() if s >= (1 - criterion.near_tie) * best]
    layer = min(tied, key=lambda lay: (abs(lay - middle), -scores[lay]))
    return LayerChoice(layer, "criterion", middle, scores, parts, criterion)


def report_layer(run: AdlRun, value: Any = None) -> int:
    """The layer an op reads when the caller gave `value` (None, a number, digits or `middle`); only None
    needs the criterion's scores."""
    requested = parse_layer(value)
    if requested == MIDDLE:
        return run.middle_layer
    if isinstance(requested, int):
        return int(run.layers[run.layer_index(requested)])
    return choose_layer(run).layer


def layer_scores(run: AdlRun, criterion: Criterion) -> tuple[dict[int, float], dict[int, dict[str, float]]]:
    """Every computed layer's score and parts, from the store when this run was scored before (no model)."""
    inputs = {"run": run.run_id, "heads": [default_head("diff"), default_head("base")], **asdict(criterion)}
    if (hit := results.lookup(KIND, inputs)) is None:
        parts = _score_layers(run, criterion)
        hit = results.save(KIND, inputs, {"scores": np.array([p["score"] for p in parts.values()], np.float32)},
                           {"run": run.run_id, "parts": {str(lay): p for lay, p in parts.items()}})
    parts = {int(lay): p for lay, p in sorted(hit.meta["parts"].items(), key=lambda item: int(item[0]))}
    return {lay: p["score"] for lay, p in parts.items()}, parts


def _score_layers(run: AdlRun, criterion: Criterion) -> dict[int, dict[str, float]]:
    k = run.mean_diff.shape[1]
    positions = list(range(1, k)) if k > 1 else [0]
    rel = (run.mean_diff.norm(dim=-1) / run.base_norm.clamp_min(1e-12))[:, positions].mean(dim=1)
    strongest = float(rel.max())
    if strongest <= 0:
        return {lay: _parts(0.0, 0.0, 0.0, 0.0, 0.0) for lay in run.layers.tolist()}
    diff, base = lens_grid(run, "diff"), lens_grid(run, "base")
    frequent = frequent_tokens(base.as_top(), top_k=criterion.top_k)  # already in normalised form
    kept = {lay: _kept_tokens(diff, row, positions, criterion.top_k, frequent)
            for row, lay in enumerate(run.layers.tolist())}
    vocabulary = sorted({t for tokens, _ in kept.values() for t in tokens})
    vectors = dict(zip(vocabulary, embed(vocabulary), strict=True))
    out = {}
    for row, lay in enumerate(run.layers.tolist()):
        tokens, kept_mass = kept[lay]
        strength = min(1.0, float(rel[row]) / (criterion.strength_floor * strongest))
        relatedness, recurrence = _relatedness(tokens, vectors), _recurrence(tokens, len(positions))
        out[lay] = _parts(relatedness, recurrence, kept_mass, strength, float(rel[row]))
    return out


def _parts(relatedness: float, recurrence: float, kept: float, strength: float, rel_norm: float) -> dict[str, float]:
    score = max(0.0, relatedness) * recurrence * kept * strength
    return {"score": round(score, 4), "relatedness": round(relatedness, 4), "recurrence": round(recurrence, 4),
            "kept": round(kept, 4), "strength": round(strength, 4), "rel_norm": round(rel_norm, 4)}


def _kept_tokens(grid: Grid, row: int, positions: list[int], top_k: int, frequent: set[str]
                 ) -> tuple[dict[str, tuple[float, int]], float]:
    """`{token: (mass, positions holding it)}` after the filters, and the share of top-k mass kept."""
    tokens: dict[str, tuple[float, int]] = {}
    total = kept = 0.0
    for pos in positions:
        seen: dict[str, float] = {}
        for token, prob in zip(grid.tokens[row][pos][:top_k], grid.probs[row, pos, :top_k].tolist(), strict=False):
            total += prob
            word = normalise_token(token)
            if is_trivial_token(token) or word in frequent:
                continue
            kept += prob
            seen[word] = seen.get(word, 0.0) + prob
        for word, prob in seen.items():
            mass, count = tokens.get(word, (0.0, 0))
            tokens[word] = (mass + prob, count + 1)
    return tokens, (kept / total if total > 0 else 0.0)


def _relatedness(tokens: dict[str, tuple[float, int]], vectors: dict[str, torch.Tensor]) -> float:
    """Mass-weighted mean pairwise cosine (the diagonal left out)."""
    if len(tokens) < 2:
        return 0.0
    words = list(tokens)
    weights = torch.tensor([tokens[w][0] for w in words])
    emb = torch.stack([vectors[w] for w in words])
    pair_weights = weights[:, None] * weights[None, :]
    pair_weights.fill_diagonal_(0.0)
    denominator = float(pair_weights.sum())
    return float((pair_weights * (emb @ emb.T)).sum()) / denominator if denominator > 0 else 0.0


def _recurrence(tokens: dict[str, tuple[float, int]], n_positions: int) -> float:
    """Mass-weighted mean share of positions holding each token."""
    total = sum(mass for mass, _ in tokens.values())
    if total <= 0:
        return 0.0
    return sum(mass * count / n_positions for mass, count in tokens.values()) / total

