"""Ops reading a run's difference: logit lens (one cell or the whole grid) and Patchscope."""

from __future__ import annotations

from typing import Any

from engine.jobs import JobContext
from engine.judges.judge_config import resolve_judge
from engine.ndif.ndif_errors import ndif_errors
from engine.ops import op
from engine.ops.adl_ops import run_of
from engine.protocol import methods
from engine.results.layer_choice import report_layer
from engine.results.readout_cells import lens_grid, patchscope_cells, patchscope_json


@op(methods.LOGIT_LENS)
def logit_lens_cell(params: methods.LogitLens, ctx: JobContext) -> dict[str, Any]:
    """Read through `head` (base | ft; default: the finetuned head, the base head for the base source)."""
    run = run_of(params.run, params.trust_remote_code)
    layer = report_layer(run, params.layer)
    pos = run.check_position(params.pos)
    row = run.layer_index(layer)  # a bad layer is refused before the grid is computed and cached
    top_k = params.top_k
    source, backend = params.source, params.backend
    with ndif_errors((backend or run.request.backend) == "ndif"):
        grid = lens_grid(run, source, head=params.head, backend=backend)
    return {"layer": layer, "pos": pos, "source": source, "head": grid.meta["head"],
            "tokens": grid.pairs(row, pos, k=min(top_k, 100))}


@op(methods.LENS_GRID)
def logit_lens_grid(params: methods.LensGrid, ctx: JobContext) -> dict[str, Any]:
    """One answer for the whole grid the TUI shows."""
    run = run_of(params.run, params.trust_remote_code)
    top_k = params.top_k
    layers = params.layers or run.layers.tolist()
    positions = params.positions or list(range(run.mean_diff.shape[1]))
    for layer in layers:  # bad layers and positions are refused before the grid is computed and cached
        run.layer_index(layer)
    for p in positions:
        run.check_position(p)
    backend = params.backend
    with ndif_errors((backend or run.request.backend) == "ndif"):
        grid = lens_grid(run, params.source, head=params.head, backend=backend)
    return {"run": run.run_id, "source": grid.meta["source"], "head": grid.meta["head"], "layers": {
        str(layer): {str(p): grid.pairs(run.layer_index(layer), run.check_position(p), k=min(top_k, 100))
                     for p in positions} for layer in layers}}


@op(methods.PATCHSCOPE)
def patchscope_cell(params: methods.Patchscope, ctx: JobContext) -> dict[str, Any]:
    """The chosen scale is picked by the `judge` (default: the configured one, else offline)."""
    run = run_of(params.run, params.trust_remote_code)
    layer = report_layer(run, params.layer)
    pos = run.check_position(params.pos)
    positions = list(range(run.mean_diff.shape[1]))
    backend, judge = params.backend, resolve_judge(params.judge)
    with (ndif_errors((backend or run.request.backend) == "ndif"),
          ctx.stage(f"patchscope at layer {layer}" + (" on NDIF" if backend == "ndif" else ""))):
        grid = patchscope_cells(run, layer, positions, scales=params.scales, backend=backend, judge=judge)
    return patchscope_json(grid, positions.index(pos), params.top_k)
