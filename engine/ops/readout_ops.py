"""Ops reading a run's difference: logit lens (one cell or the whole grid) and Patchscope."""

from __future__ import annotations

from typing import Any

from engine.errors import UserError
from engine.jobs import JobContext
from engine.judges.judge_config import resolve_judge
from engine.ndif.ndif_errors import ndif_errors
from engine.ops import op
from engine.ops.adl_ops import run_param
from engine.params import get, get_list
from engine.results.layer_choice import report_layer
from engine.results.readout_cells import lens_grid, patchscope_cells, patchscope_json

SOURCES = ("diff", "base", "ft")


def backend_param(params: dict[str, Any]) -> str | None:
    """`backend` (local | ndif); None: where the run ran."""
    backend = get(params, "backend", str)
    if backend not in (None, "local", "ndif"):
        raise UserError(f"unknown backend {backend!r}", "pass backend local or ndif")
    return backend


def _source(params: dict[str, Any]) -> str:
    source = get(params, "source", str, "diff")
    if source not in SOURCES:
        raise UserError(f"unknown source {source!r}", "pass source diff, base or ft")
    return source


@op("readout.logit_lens")
def logit_lens_cell(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Logit-lens top tokens of one (layer, pos) cell of diff, base or ft (the whole grid is cached), read
    through `head` (base | ft; default: the finetuned head, the base head for the base source)."""
    run = run_param(params)
    layer = report_layer(run, params.get("layer"))
    pos = run.check_position(get(params, "pos", int, 0))
    row = run.layer_index(layer)  # a bad layer is refused before the grid is computed and cached
    top_k = get(params, "top_k", int, 20)
    source, backend = _source(params), backend_param(params)
    with ndif_errors((backend or run.request.backend) == "ndif"):
        grid = lens_grid(run, source, head=get(params, "head", str), backend=backend)  # type: ignore[arg-type]
    return {"layer": layer, "pos": pos, "source": source, "head": grid.meta["head"],
            "tokens": grid.pairs(row, pos, k=min(top_k, 100))}


@op("readout.lens_grid")
def logit_lens_grid(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Logit-lens top tokens of every layer × position (or the given layers) of diff, base or ft."""
    run = run_param(params)
    top_k = get(params, "top_k", int, 10)
    layers = get_list(params, "layers", int) or run.layers.tolist()
    positions = get_list(params, "positions", int) or list(range(run.mean_diff.shape[1]))
    for layer in layers:  # bad layers and positions are refused before the grid is computed and cached
        run.layer_index(layer)
    for p in positions:
        run.check_position(p)
    backend = backend_param(params)
    with ndif_errors((backend or run.request.backend) == "ndif"):
        grid = lens_grid(run, _source(params), head=get(params, "head", str), backend=backend)  # type: ignore[arg-type]
    return {"run": run.run_id, "source": grid.meta["source"], "head": grid.meta["head"], "layers": {
        str(layer): {str(p): grid.pairs(run.layer_index(layer), run.check_position(p), k=min(top_k, 100))
                     for p in positions} for layer in layers}}


@op("readout.patchscope", long=True)
def patchscope_cell(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Patchscope of the diff at one layer: every position in one batch (cached); returns `pos`'s scales, the
    chosen one picked by the `judge` (default: the configured one, else offline)."""
    run = run_param(params)
    layer = report_layer(run, params.get("layer"))
    pos = run.check_position(get(params, "pos", int, 0))
    positions = list(range(run.mean_diff.shape[1]))
    backend, judge = backend_param(params), resolve_judge(get(params, "judge", str))
    with (ndif_errors((backend or run.request.backend) == "ndif"),
          ctx.stage(f"patchscope at layer {layer}" + (" on NDIF" if backend == "ndif" else ""))):
        grid = patchscope_cells(run, layer, positions, scales=get_list(params, "scales", float), backend=backend,
                                judge=judge)
    return patchscope_json(grid, positions.index(pos), get(params, "top_k", int, 20))
