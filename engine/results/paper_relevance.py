"""The reference's token relevance of a report (`--protocol paper`, diffing-toolkit `run_token_relevance`): the
top 20 logit-lens tokens and the Patchscope tokens at the chosen scale, of the difference, the mean base and the
mean finetuned activations (all read through the finetuned model's head, as the reference reads them), at the
report's layer and positions, graded against the finetune's description and against each baseline organism's.
Cached per judge; a cell the judge left ungraded carries its reason, and then nothing is cached."""

from __future__ import annotations

from typing import Any

import numpy as np

from engine.adl.runs import AdlRun
from engine.errors import Ungraded
from engine.judges.judge_config import Judge
from engine.readouts.patchscope import SCALE_MAGNITUDES
from engine.readouts.reference_relevance import (
    ReferenceGrader,
    frequent_tokenizer_tokens,
    reference_relevance,
    reference_token_grader,
)
from engine.results.organism_pool import Organism, baseline_organisms
from engine.results.readout_cells import Grid, Side, Source, lens_grid, patchscope_cells
from engine.steering.steering_prompts import reference_prompts
from store import results
from store.hashing import json_sha256

CANDIDATES = 20  # `k_candidate_tokens`
# The reference's names: variant (whose vectors) and source (which readout).
VARIANTS: dict[str, Source] = {"difference": "diff", "base": "base", "ft": "ft"}
SOURCES = ("logitlens", "patchscope")
LENS_HEAD: Side = "ft"  # the reference reads all three variants' logit lens through the finetuned model
SELF = "self"


def paper_patchscope(run: AdlRun, layer: int, positions: list[int], judge: Judge,
                     variant: str = "difference") -> Grid:
    """Patchscope of one variant as the reference reads it: the positive scales only (`auto_patch_scope` grades
    the +s·v side), chosen by the reference's grader and tournament (offline: token stability); the mean base
    activations are patched into the base model."""
    return patchscope_cells(run, layer, positions, scales=list(SCALE_MAGNITUDES), judge=judge,
                            source=VARIANTS[variant], grader="reference")


def paper_patchscopes(run: AdlRun, layer: int, positions: list[int], judge: Judge) -> dict[str, Grid]:
    """`paper_patchscope` of the difference, the mean base and the mean finetuned activations."""
    return {variant: paper_patchscope(run, layer, positions, judge, variant) for variant in VARIANTS}


def paper_relevance(run: AdlRun, layer: int, positions: list[int], scopes: dict[str, Grid], own: Organism,
                    judge: Judge) -> dict[str, Any]:
    """Every (target, source, variant, position) graded as the reference grades it, and the means over positions
    per (target, source, variant). Needs an LLM judge: the reference has no offline grader."""
    targets = [own, *baseline_organisms(own)]
    inputs = {"run": run.run_id, "layer": layer, "positions": positions, "judge": judge.identity,
              "targets": [[o.name, o.description, json_sha256(list(o.texts))] for o in targets],
              "patchscope": json_sha256({v: {k: g.meta[k] for k in ("best_scale", "selected", "tokens")}
                                         for v, g in scopes.items()})}
    if (hit := results.lookup("paper_relevance", inputs)) is not None:
        return dict(hit.meta["relevance"])
    tokenizer = run.pair().tokenizer
    frequent = {o.name: frequent_tokenizer_tokens(tokenizer, o.texts) for o in targets}
    lens = {variant: lens_grid(run, source, head=LENS_HEAD) for variant, source in VARIANTS.items()}
    prompts = reference_prompts()
    grader = reference_token_grader(judge.complete, judge.complete_cold, prompts.token_relevance_system)
    row = run.layer_index(layer)
    cells = []
    for target in targets:
        label = SELF if target is own else target.name
        for source in SOURCES:
            for variant in VARIANTS:
                for index, pos in enumerate(positions):
                    cell = {"target": label, "source": source, "variant": variant, "pos": pos}
                    candidates = (_lens_candidates(lens[variant], row, pos) if source == "logitlens"
                                  else _scope_candidates(scopes[variant], index))
                    cells.append(cell | _graded(grader, target, frequent[target.name], *candidates))
    out = {"layer": layer, "positions": positions, "judge": judge.identity, "targets": [
        {"name": SELF if o is own else o.name, "description": o.description, "frequent_tokens": frequent[o.name]}
        for o in targets], "cells": cells, "summary": _summary(cells)}
    if not any("ungraded" in c for c in cells):
        results.save("paper_relevance", inputs, {"cells": np.zeros(len(cells), np.float32)}, {"relevance": out})
    return out


def _lens_candidates(grid: Grid, row: int, pos: int) -> tuple[list[str], list[float], None]:
    return list(grid.tokens[row][pos][:CANDIDATES]), grid.probs[row, pos, :CANDIDATES].tolist(), None


def _scope_candidates(grid: Grid, index: int) -> tuple[list[str], list[float], list[str] | None]:
    """The chosen scale's tokens in the prompt intersection (the reference keeps the nonzero ones) and the
    grader's selected tokens; no candidates when the cell went ungraded (no scale was chosen)."""
    if grid.meta["chosen_by"][index].startswith("ungraded"):
        return [], [], []
    best = grid.meta["scales"].index(grid.meta["best_scale"][index])
    probs = grid.probs[index, best, :CANDIDATES]
    tokens = [t for t, p in zip(grid.tokens[index][best][:CANDIDATES], probs.tolist(), strict=True) if p > 0]
    return tokens, [p for p in probs.tolist() if p > 0], list(grid.meta["selected"][index])


def _graded(grader: ReferenceGrader, target: Organism, frequent: list[str], tokens: list[str], probs: list[float],
            selected: list[str] | None) -> dict[str, Any]:
    if not any(tokens):
        return {"ungraded": "no candidate tokens (an ungraded Patchscope cell, or an empty readout)"}
    try:
        graded = reference_relevance(tokens, probs, target.description, frequent, grader, selected)
    except Ungraded as exc:
        return {"ungraded": str(exc)}
    return graded.to_json() | ({"selected": selected} if selected is not None else {})


SHARES = ("percentage", "weighted_percentage", "trivial_percentage", "filtered_percentage",
          "weighted_filtered_percentage")


def _summary(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean of each share over the graded positions, per target, source and variant (`n` graded positions)."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for cell in cells:
        groups.setdefault((cell["target"], cell["source"], cell["variant"]), []).append(cell)
    out: dict[str, Any] = {}
    for (target, source, variant), group in groups.items():
        graded = [c for c in group if "ungraded" not in c]
        means: dict[str, Any] = {"n": len(graded), "ungraded": len(group) - len(graded)}
        for share in SHARES:
            values = [c[share] for c in graded if c.get(share) is not None]
            means[share] = round(sum(values) / len(values), 4) if values else None
        out.setdefault(target, {}).setdefault(source, {})[variant] = means
    return out
