"""The report's other evidence against the same null: token relevance and steering gain of the random adapters.

`engine/results/significance.py` runs N random adapters shaped like the finetune through the same pipeline and
tests the layer criterion. Here the same null runs are read further, each at the layer its own report would read
(its best-criterion layer, or the layer the user named): the diff logit lens graded by the same judge against the
finetune's description (cached per judge, description and texts: the null runs themselves are shared), and, when
the report steers, the same calibrated steering and the same embedding similarity to the finetuning texts.
Each is reported as the finetune's number against the nulls' (mean, sd, max, z, empirical p); the verdict of the
report stays the criterion's, these say whether the other evidence clears its own null too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from engine.adl.runs import AdlRun, load_run
from engine.errors import Ungraded
from engine.judges.judge_config import Judge
from engine.readouts.relevance import token_relevance
from engine.results.judged_relevance import Cells, token_grader
from engine.results.known_finetune import KnownFinetune
from engine.results.layer_choice import LayerChoice
from engine.results.readout_cells import lens_grid
from engine.results.significance import NullTable, against
from store import results
from store.hashing import json_sha256

KIND = "nullrelevance"
GainOf = Callable[[AdlRun, int], float | None]


def null_layers(choice: LayerChoice, table: NullTable) -> list[int]:
    """The layer each null adapter's report reads: its own best-criterion layer, or the layer the user named."""
    if choice.by != "criterion":
        return [choice.layer] * len(table.runs)
    scores = np.round(table.scores.astype(np.float64), 4)
    return [table.layers[int(np.argmax(row))] for row in scores]


def observed_relevance(relevance: Cells, layer: int) -> float | None:
    """The report's diff-lens relevance at its layer: the mean over the positions the judge graded."""
    shares = [cell["diff"] for (lay, _), cell in relevance.items() if lay == layer and cell["diff"] is not None]
    return sum(shares) / len(shares) if shares else None


def relevance_null(table: NullTable, choice: LayerChoice, known: KnownFinetune, top_k: int, judge: Judge,
                   frequent: list[str], observed: float) -> dict[str, Any]:
    """The finetune's relevance at its layer against each null run's at its own layer, graded alike."""
    layers = null_layers(choice, table)
    inputs = {"runs": table.runs, "layers": layers, "top_k": top_k, "description": known.description,
              "texts": json_sha256(known.training_texts), "judge": judge.identity, "frequent": frequent}
    if (hit := results.lookup(KIND, inputs)) is None:
        grader = token_grader(known, judge)
        shares = []
        try:
            for run_id, layer in zip(table.runs, layers, strict=True):
                grid, row = lens_grid(load_run(run_id), "diff"), table.layers.index(layer)
                shares.append(float(np.mean([token_relevance(
                    grid.tokens[row][pos][:top_k], grid.probs[row, pos, :top_k].tolist(), known.description, grader,
                    frequent=frequent).share for pos in range(len(grid.tokens[row]))])))
        except Ungraded as exc:
            return {"tested": False, "statement": f"relevance not tested against the null: {exc}"}
        hit = results.save(KIND, inputs, {"shares": np.asarray(shares, np.float64)}, {"layers": layers})
    return {"tested": True, **against(observed, hit.tensors["shares"].astype(np.float64))}


def gain_null(table: NullTable, choice: LayerChoice, gain_of: GainOf, observed: float) -> dict[str, Any]:
    """The finetune's steering gain against each null run's, steered and judged by `gain_of` at its own layer
    (each step is cached by the steering and similarity stores, so a second report pays nothing)."""
    gains = [gain_of(load_run(run_id), layer) for run_id, layer in zip(table.runs, null_layers(choice, table),
                                                                      strict=True)]
    measured = np.asarray([g for g in gains if g is not None], np.float64)
    if len(measured) < 2:
        return {"tested": False, "statement": "steering gain not tested: fewer than two null adapters could be steered"}
    return {"tested": True, **against(observed, measured)}
