"""Token relevance of a report's readouts (diff, base and finetuned logit lens, Patchscope) by the configured
judge, cached per judge. A cell the judge left ungraded is `None` with its reason, never a silent zero."""

from __future__ import annotations

from typing import Any

import numpy as np

from engine.adl.runs import AdlRun
from engine.errors import Ungraded
from engine.judges.judge_config import Judge
from engine.readouts.relevance import (
    TokenGrader,
    embedding_token_grader,
    frequent_tokens,
    frequent_words,
    llm_token_grader,
    token_relevance,
)
from engine.results.known_finetune import KnownFinetune
from engine.results.readout_cells import Grid
from store import results
from store.hashing import json_sha256

Cells = dict[tuple[int, int], dict[str, Any]]


def token_grader(known: KnownFinetune, judge: Judge) -> TokenGrader:
    """The judge's grader: the LLM with the finetuning data's frequent words and a few of its texts as context,
    or offline the MiniLM cosine to the description and the texts' centroid."""
    if judge.offline:
        return embedding_token_grader(known.training_texts[:20])
    return llm_token_grader(judge.complete, samples=known.training_texts[:5],
                            frequent=frequent_words(known.training_texts))


def relevance_cells(run: AdlRun, lens: dict[str, Grid], scope: Grid, known: KnownFinetune, top_k: int,
                    judge: Judge) -> Cells:
    """Share of relevant top-k tokens per cell for the diff, base and finetuned lens, and Patchscope; a cell
    with ungraded readouts carries `"ungraded": {source: reason}`. Cached unless something went ungraded."""
    inputs = {"run": run.run_id, "top_k": top_k, "description": known.description,
              "texts": json_sha256(known.training_texts), "judge": judge.identity,
              "patchscope": json_sha256({k: scope.meta[k] for k in ("layer", "positions", "best_scale", "chosen_by",
                                                                     "tokens")})}
    if (hit := results.lookup("relevance", inputs)) is not None:
        return {(c["layer"], c["pos"]): c["cell"] for c in hit.meta["cells"]}
    grader = token_grader(known, judge)
    frequent = frequent_tokens(lens["base"].as_top(), top_k=top_k)
    if judge.offline:  # one embedding call warms the grader for every cell
        grader(known.description, sorted({t for grid in (*lens.values(), scope)
                                          for t in np.asarray(grid.tokens, dtype=object)[..., :top_k].ravel()}))

    def share(cell: dict[str, Any], source: str, tokens: list[str], probs: list[float]) -> None:
        try:
            cell[source] = round(token_relevance(tokens, probs, known.description, grader, frequent=frequent).share, 3)
        except Ungraded as exc:
            cell[source] = None
            cell.setdefault("ungraded", {})[source] = str(exc)

    out: Cells = {}
    for row, lay in enumerate(run.layers.tolist()):
        for pos in range(run.mean_diff.shape[1]):
            cell: dict[str, Any] = {}
            for source, grid in lens.items():
                share(cell, source, grid.tokens[row][pos][:top_k], grid.probs[row, pos, :top_k].tolist())
            out[(lay, pos)] = cell
    for index, pos in enumerate(scope.meta["positions"]):
        cell = out[(scope.meta["layer"], pos)]
        if (chosen := scope.meta["chosen_by"][index]).startswith("ungraded"):
            cell["patchscope"] = None
            cell.setdefault("ungraded", {})["patchscope"] = f"no Patchscope scale was chosen ({chosen})"
            continue
        best = scope.meta["scales"].index(scope.meta["best_scale"][index])
        share(cell, "patchscope", scope.tokens[index][best][:top_k], scope.probs[index, best, :top_k].tolist())
    if not any("ungraded" in cell for cell in out.values()):
        results.save("relevance", inputs, {"cells": np.zeros(len(out), np.float32)},
                     {"cells": [{"layer": lay, "pos": pos, "cell": cell} for (lay, pos), cell in out.items()]})
    return out


def relevance_summary(relevance: Cells) -> dict[str, Any] | None:
    """Best layer by mean diff-lens relevance over its graded positions, and that layer's numbers (None when
    nothing was graded); `ungraded_cells` counts the cells whose diff lens went ungraded."""
    by_layer: dict[int, list[float]] = {}
    for (lay, _), cell in relevance.items():
        if cell["diff"] is not None:
            by_layer.setdefault(lay, []).append(cell["diff"])
    if not by_layer:
        return None
    means = {lay: sum(values) / len(values) for lay, values in by_layer.items()}
    best = max(means, key=lambda lay: means[lay])
    peak = max(((key, cell) for key, cell in relevance.items() if cell["diff"] is not None),
               key=lambda item: item[1]["diff"])
    return {"best_layer": best, "best_layer_mean_diff_relevance": round(means[best], 3),
            "best_cell": {"layer": peak[0][0], "pos": peak[0][1],
                          **{k: v for k, v in peak[1].items() if k != "ungraded"}},
            "per_layer_mean": {str(lay): round(v, 3) for lay, v in sorted(means.items())},
            "ungraded_cells": sum(cell["diff"] is None for cell in relevance.values())}
