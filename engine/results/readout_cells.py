"""Logit lens and Patchscope of a run's mean difference, cached in the store with their token strings
(so a replay needs no tokenizer and no torch)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from engine.adl.rescale_norm import layer_norm, norm_key
from engine.adl.runs import AdlRun
from engine.errors import UserError
from engine.judges.judge_config import OFFLINE_LABELS, Judge
from engine.readouts.logit_lens import logit_lens
from engine.readouts.patchscope import DEFAULT_SCALES, IDENTITY_PROMPTS, INTERSECTION_TOP_K, ScaleGrader, patchscope
from engine.readouts.scale_grader import llm_scale_grader, reference_scale_grader
from engine.readouts.topk import TopTokens
from engine.steering.steering_prompts import reference_prompts
from store import results

Source = Literal["diff", "base", "ft"]
Side = Literal["base", "ft"]
ScaleChooser = Literal["difflens", "reference"]


def default_head(source: Source) -> Side:
    """Whose final norm and unembedding read `source` by default: the mean base activations the base
    model's own, the diff and the mean finetuned activations the finetuned model's (as the reference reads
    the diff). The reference reads all three through the finetuned head: `head="ft"` reproduces that."""
    return "base" if source == "base" else "ft"


@dataclass
class Grid:
    """Top tokens over a grid of cells: `ids`/`probs` are `[*grid, k]`, `tokens` the same as nested lists."""

    ids: np.ndarray
    probs: np.ndarray
    tokens: list[Any]
    meta: dict[str, Any]

    def pairs(self, *cell: int, k: int | None = None) -> list[list[Any]]:
        """`[[token, prob], ...]` of one cell, best first (a zero probability is an empty slot: a token
        outside Patchscope's prompt intersection)."""
        tokens: Any = self.tokens
        for index in cell:
            tokens = tokens[index]
        probs = self.probs[cell]
        return [[t, round(float(p), 6)] for t, p in zip(tokens[:k], probs[:k], strict=False) if p > 0]

    def as_top(self) -> TopTokens:
        """The grid as `TopTokens`, for the readout helpers that take one."""
        return TopTokens(torch.from_numpy(self.ids), torch.from_numpy(self.probs),
                         np.array(self.tokens, dtype=object))


def _vectors(run: AdlRun, source: Source) -> torch.Tensor:
    if source == "diff":
        return run.mean_diff
    if source == "base":
        return run.mean_base
    if source == "ft":
        return run.mean_base + run.mean_diff
    raise UserError(f"unknown readout source {source!r}", "pass diff, base or ft")


def lens_grid(run: AdlRun, source: Source = "diff", top_k: int = 100, head: Side | None = None,
              backend: str | None = None) -> Grid:
    """Logit lens of every layer × position of `source` (one batched call), read with `head`'s final norm
    and unembedding (None: `default_head(source)`); `backend` ndif unembeds on NDIF. Each head is cached
    apart and `meta["head"]` says which one read the grid."""
    backend, head = backend or run.request.backend, head or default_head(source)
    if head not in ("base", "ft"):
        raise UserError(f"unknown logit-lens head {head!r}", "pass head base or ft")
    inputs = {"run": run.run_id, "source": source, "top_k": top_k, "head": head} | _backend_key(backend)
    if (hit := results.lookup("logitlens", inputs)) is not None:
        return Grid(hit.tensors["ids"], hit.tensors["probs"], hit.meta["tokens"], hit.meta)
    with run.pair(backend).use(head) as model:
        top = logit_lens(model, _vectors(run, source), top_k=top_k)
    meta = {"run": run.run_id, "source": source, "head": head, "layers": run.layers.tolist(),
            "tokens": top.tokens.tolist()}
    stored = results.save("logitlens", inputs, {"ids": top.ids.numpy(), "probs": top.probs.numpy()}, meta)
    return Grid(stored.tensors["ids"], stored.tensors["probs"], meta["tokens"], meta)


def patchscope_cells(run: AdlRun, layer: int, positions: list[int], scales: list[float] | None = None,
                     prompts: Sequence[str] = IDENTITY_PROMPTS, top_k: int = 20, side: Side | None = None,
                     backend: str | None = None, judge: Judge | None = None, source: Source = "diff",
                     grader: ScaleChooser = "difflens") -> Grid:
    """Patchscope of `source` (the diff, or the mean base or finetuned activations) at (`layer`, p) for each p in
    `side`'s model (None: `default_head(source)`, as the reference patches the base mean into the base model):
    every scale kept (`[pos, scale, k]`), the chosen scale and its "selected tokens" in `meta`, chosen by `judge`
    (offline: token stability), which the cache key and `meta["judge"]` name; `grader` "reference" asks the
    judge with the reference's prompt and tournament. The vector is rescaled to the finetuned model's mean
    activation norm at the layer (`layer_norm`, as steering: the reference's for a from-BOS run)."""
    row, backend, side = run.layer_index(layer), backend or run.request.backend, side or default_head(source)
    judge = judge or Judge()
    positions = [run.check_position(p) for p in positions]
    scale_list = sorted(float(s) for s in (scales or DEFAULT_SCALES))
    inputs = {"run": run.run_id, "layer": layer, "positions": positions, "scales": scale_list,
              "prompts": list(prompts), "set_k": INTERSECTION_TOP_K,
              "norm": norm_key(run).get("norm", "ft-mean-without-pos-0"),
              "chooser": "positive-side", "top_k": top_k, "side": side} | _backend_key(backend) | judge.key()
    inputs |= ({"source": source} if source != "diff" else {}) | ({"grader": grader} if grader != "difflens" else {})
    if (hit := results.lookup("patchscope", inputs)) is not None:
        return Grid(hit.tensors["ids"], hit.tensors["probs"], hit.meta["tokens"], hit.meta)
    with run.pair(backend).use(side) as model:
        result = patchscope(model, _vectors(run, source)[row, positions], [layer] * len(positions),
                            target_norms=[layer_norm(run, layer)] * len(positions), scales=scale_list,
                            prompts=prompts, top_k=top_k, grader=_scale_grader(judge, grader))
    meta = {"run": run.run_id, "layer": layer, "positions": positions, "scales": list(result.scales),
            "prompts": list(result.prompts), "best_scale": result.best_scale, "best_by_sign": result.best_by_sign,
            "selected": result.selected_tokens, "chosen_by": result.chosen_by, "judge": judge.label("patchscope"),
            "tokens": result.top.tokens.tolist(), "source": source, "side": side, "grader": grader}
    tensors = {"ids": result.top.ids.numpy(), "probs": result.top.probs.numpy()}
    if any(c.startswith("ungraded") for c in result.chosen_by):  # not cached: the next call asks the judge again
        return Grid(tensors["ids"], tensors["probs"], meta["tokens"], meta)
    stored = results.save("patchscope", inputs, tensors, meta)
    return Grid(stored.tensors["ids"], stored.tensors["probs"], meta["tokens"], meta)


def _scale_grader(judge: Judge, grader: ScaleChooser) -> ScaleGrader | None:
    """The judge's scale chooser: none offline (token stability), else difflens's prompt or the reference's."""
    if judge.offline:
        return None
    if grader == "reference":
        return reference_scale_grader(judge.complete, reference_prompts().patchscope_system)
    return llm_scale_grader(judge.complete)


def _backend_key(backend: str | None) -> dict[str, str]:
    """NDIF runs the server's dtype: its readouts are cached apart (local keys are unchanged)."""
    return {"backend": backend} if backend and backend != "local" else {}


def patchscope_json(grid: Grid, index: int, k: int = 20) -> dict[str, Any]:
    """One position of a Patchscope grid in the shape the TUI and the report use."""
    meta = grid.meta
    return {"layer": meta["layer"], "pos": meta["positions"][index], "best_scale": meta["best_scale"][index],
            "best_by_sign": meta["best_by_sign"][index], "selected": meta["selected"][index],
            "chosen_by": meta["chosen_by"][index], "judge": meta.get("judge", OFFLINE_LABELS["patchscope"]),
            "scales": [{"scale": s, "tokens": grid.pairs(index, i, k=k)} for i, s in enumerate(meta["scales"])]}
