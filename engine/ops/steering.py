"""Ops steering with a run's difference: generate (streamed) and calibrate."""

from __future__ import annotations

from typing import Any

from engine.analysis.steering import CalibrationSettings, calibrate, steer
from engine.errors import UserError
from engine.jobs import JobContext
from engine.ndif.errors import ndif_errors
from engine.ops import op
from engine.ops.adl import run_param
from engine.ops.params import get, get_count, get_list
from engine.ops.readouts import backend_param


def _side(params: dict[str, Any]) -> str:
    side = get(params, "side", str, "ft")
    if side not in ("base", "ft"):
        raise UserError(f"unknown side {side!r}", "steer the ft (default) or the base model")
    return side


@op("steer.calibrate", long=True)
def steer_calibrate(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Largest coherent strength at (layer, pos); all positions of the layer are calibrated in one batch."""
    run = run_param(params)
    layer = get(params, "layer", int, run.middle_layer)
    pos = run.check_position(get(params, "pos", int, 0))
    positions = list(range(run.mean_diff.shape[1]))
    ctx.progress(0, 1, f"calibrating layer {layer}")
    settings = CalibrationSettings.for_device(run.request.placement.device, method=get(params, "method", str),
                                              max_strength=get(params, "max_strength", float))
    found = calibrate(run, layer, positions, settings, side=_side(params))  # type: ignore[arg-type]
    ctx.progress(1, 1, "done")
    cell = found[positions.index(pos)]
    return {"layer": layer, "pos": pos, "strength": cell["strength"], "history": cell["coherence"],
            "examples": cell["examples"]}


@op("steer.generate", long=True)
def steer_generate(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Steered beside unsteered text for prompts × strengths, one generate call, streamed as it comes."""
    run = run_param(params)
    layer = get(params, "layer", int, run.middle_layer)
    pos = run.check_position(get(params, "pos", int, 0))
    strengths = get_list(params, "strengths", float)
    backend = backend_param(params)
    remote = (backend or run.request.backend) == "ndif"
    if not strengths and remote:
        raise UserError("automatic strength calibration scores samples with local weights, which NDIF keeps",
                        "pass --strength S with --backend ndif")
    if not strengths:
        found = calibrate(run, layer, list(range(run.mean_diff.shape[1])), side=_side(params))  # type: ignore[arg-type]
        if found[pos]["strength"] <= 0:
            raise UserError(f"no coherent steering strength at layer {layer} position {pos}",
                            "pass --strength explicitly, or try another layer or position")
        strengths = [found[pos]["strength"]]
    with ndif_errors(remote):
        samples = steer(run, layer, pos, strengths, get_list(params, "prompts", str),
                        samples=get_count(params, "n_samples", 1, 1000),
                        max_new_tokens=get_count(params, "max_new_tokens", 64, 8192),
                        temperature=get(params, "temperature", float, 0.0), seed=get(params, "seed", int, 0),
                        side=_side(params), on_partial=ctx.partial, backend=backend)  # type: ignore[arg-type]
    return {"layer": layer, "pos": pos, "strengths": strengths, "samples": samples}
