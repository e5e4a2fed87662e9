"""Logit lens and Patchscope of a run's mean difference, cached in the store with their token strings
(so a replay needs no tokenizer and no torch)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from engine.adl.runs import AdlRun
from engine.errors import UserError
from engine.readouts.logit_lens import logit_lens
from engine.readouts.patchscope import DEFAULT_SCALES, IDENTITY_PROMPT, patchscope
from engine.readouts.topk import TopTokens
from store import results

Source = Literal["diff", "base", "ft"]
Side = Literal["base", "ft"]
LENS_SIDE: Side = "base"  # whose final norm and unembedding the logit lens reads through by default


@dataclass
class Grid:
    """Top tokens over a grid of cells: `ids`/`probs` are `[*grid, k]`, `tokens` the same as nested lists."""

    ids: np.ndarray
    probs: np.ndarray
    tokens: list[Any]
    meta: dict[str, Any]

    def pairs(self, *cell: int, k: int | None = None) -> list[list[Any]]:
        """`[[token, prob], ...]` of one cell, best first."""
        tokens: Any = self.tokens
        for index in cell:
            tokens = tokens[index]
        probs = self.probs[cell]
        return [[t, round(float(p), 6)] for t, p in zip(tokens[:k], probs[:k], strict=False)]

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


def lens_grid(run: AdlRun, source: Source = "diff", top_k: int = 100, side: Side = LENS_SIDE,
              backend: str | None = None) -> Grid:
    """Logit lens of every layer × position of `source` (one batched call), read with `side`'s final norm
    and unembedding (the base model's by default, as in the paper); `backend` ndif unembeds on NDIF."""
    backend = backend or run.request.backend
    inputs = {"run": run.run_id, "source": source, "top_k": top_k, "side": side} | _backend_key(backend)
    if (hit := results.lookup("logitlens", inputs)) is not None:
        return Grid(hit.tensors["ids"], hit.tensors["probs"], hit.meta["tokens"], hit.meta)
    with run.pair(backend).use(side) as model:
        top = logit_lens(model, _vectors(run, source), top_k=top_k)
    meta = {"run": run.run_id, "source": source, "side": side, "layers": run.layers.tolist(),
            "tokens": top.tokens.tolist()}
    stored = results.save("logitlens", inputs, {"ids": top.ids.numpy(), "probs": top.probs.numpy()}, meta)
    return Grid(stored.tensors["ids"], stored.tensors["probs"], meta["tokens"], meta)


def patchscope_cells(run: AdlRun, layer: int, positions: list[int], scales: list[float] | None = None,
                     prompt: str = IDENTITY_PROMPT, top_k: int = 20, side: Side = "ft",
                     backend: str | None = None) -> Grid:
    """Patchscope of the diff at (`layer`, p) for each p: every scale kept (`[pos, scale, k]`), the chosen
    scale and its "selected tokens" in `meta`. The diff is rescaled to the layer's mean activation norm."""
    row, backend = run.layer_index(layer), backend or run.request.backend
    positions = [run.check_position(p) for p in positions]
    scale_list = sorted(float(s) for s in (scales or DEFAULT_SCALES))
    inputs = {"run": run.run_id, "layer": layer, "positions": positions, "scales": scale_list,
              "prompt": prompt, "top_k": top_k, "side": side} | _backend_key(backend)
    if (hit := results.lookup("patchscope", inputs)) is not None:
        return Grid(hit.tensors["ids"], hit.tensors["probs"], hit.meta["tokens"], hit.meta)
    norms = run.ft_norm if side == "ft" else run.base_norm
    with run.pair(backend).use(side) as model:
        result = patchscope(model, run.mean_diff[row, positions], [layer] * len(positions),
                            target_norms=norms[row, positions], scales=scale_list, prompt=prompt, top_k=top_k)
    meta = {"run": run.run_id, "layer": layer, "positions": positions, "scales": list(result.scales),
            "best_scale": result.best_scale, "selected": result.selected_tokens, "chosen_by": result.chosen_by,
            "tokens": result.top.tokens.tolist()}
    stored = results.save("patchscope", inputs, {"ids": result.top.ids.numpy(), "probs": result.top.probs.numpy()},
                          meta)
    return Grid(stored.tensors["ids"], stored.tensors["probs"], meta["tokens"], meta)


def _backend_key(backend: str | None) -> dict[str, str]:
    """NDIF runs the server's dtype: its readouts are cached apart (local keys are unchanged)."""
    return {"backend": backend} if backend and backend != "local" else {}


def patchscope_json(grid: Grid, index: int, k: int = 20) -> dict[str, Any]:
    """One position of a Patchscope grid in the shape the TUI and the report use."""
    meta = grid.meta
    return {"layer": meta["layer"], "pos": meta["positions"][index], "best_scale": meta["best_scale"][index],
            "selected": meta["selected"][index], "chosen_by": meta["chosen_by"][index],
            "scales": [{"scale": s, "tokens": grid.pairs(index, i, k=k)} for i, s in enumerate(meta["scales"])]}
