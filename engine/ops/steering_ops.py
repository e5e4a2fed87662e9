"""Ops steering with a run's difference (or a principal component of it): generate (streamed) and calibrate."""

from __future__ import annotations

from typing import Any

import torch

from engine.adl.runs import AdlRun
from engine.errors import UserError
from engine.jobs import JobContext
from engine.judges.judge_config import OFFLINE_LABELS, resolve_judge
from engine.lenses.pair_request import PairRequest
from engine.lenses.pca import KIND as PCA_KIND
from engine.ndif.ndif_errors import ndif_errors
from engine.ops import op
from engine.ops.adl_ops import run_of
from engine.protocol import methods
from engine.protocol.methods import CalibrationParams
from engine.results.calibrated_steering import CalibrationSettings, Direction, calibrate, steer
from engine.results.layer_choice import report_layer
from engine.steering.steering_prompts import default_prompts
from store import results


def _calibrate(params: CalibrationParams, run: AdlRun, layer: int) -> list[dict[str, Any]]:
    """Every position of `layer` calibrated under the params' `protocol`, `method`, `max_strength` and `judge`."""
    settings = CalibrationSettings.for_device(run.request.placement.device, protocol=params.protocol,
                                              method=params.method, max_strength=params.max_strength)
    return calibrate(run, layer, list(range(run.mean_diff.shape[1])), settings, side=params.side,
                     judge=resolve_judge(params.judge))


@op(methods.STEER_CALIBRATE)
def steer_calibrate(params: methods.SteerCalibrate, ctx: JobContext) -> dict[str, Any]:
    """The cell's coherence history and examples come with its strength."""
    run = run_of(params.run, params.trust_remote_code)
    layer = report_layer(run, params.layer)
    pos = run.check_position(params.pos)
    with ctx.stage(f"calibrating layer {layer}"):
        cell = _calibrate(params, run, layer)[pos]
    return {"layer": layer, "pos": pos, "strength": cell["strength"], "history": cell["coherence"],
            "examples": cell["examples"], **_judged(cell)}


def _judged(cell: dict[str, Any]) -> dict[str, Any]:
    """Who judged a calibrated cell and how many samples it left ungraded (older cache entries: offline)."""
    return {"judge": cell.get("judge", OFFLINE_LABELS["coherence"]), "ungraded": cell.get("ungraded", 0)}


@op(methods.STEER_GENERATE)
def steer_generate(params: methods.SteerGenerate, ctx: JobContext) -> dict[str, Any]:
    """No strengths: the cell's calibrated one (± for a principal component, whose sign is arbitrary)."""
    run = run_of(params.run, params.trust_remote_code)
    layer = report_layer(run, params.layer)
    pos = run.check_position(params.pos)
    strengths = params.strengths
    backend = params.backend
    remote = (backend or run.request.backend) == "ndif"
    if not strengths and remote:
        raise UserError("automatic strength calibration scores samples with local weights, which NDIF keeps",
                        "pass --strength S with --backend ndif")
    direction = component_direction(params.component, run, layer)
    calibrated: dict[str, Any] = {}
    if not strengths:
        with ctx.stage(f"calibrating layer {layer}"):
            cell = _calibrate(params, run, layer)[pos]
        if cell["strength"] <= 0:
            raise UserError(f"no coherent steering strength at layer {layer} position {pos}",
                            "pass --strength explicitly, or try another layer or position")
        # a component's sign is arbitrary: steer both ways at the mean diff's coherent strength
        strengths = [cell["strength"]] if direction is None else [cell["strength"], -cell["strength"]]
        calibrated = {"calibration": _judged(cell)}
    with ndif_errors(remote), ctx.stage(f"steering layer {layer}"):
        prompts = params.prompts or list(default_prompts()[: params.n_prompts])
        samples = steer(run, layer, pos, strengths, prompts, samples=params.n_samples,
                        max_new_tokens=params.max_new_tokens, temperature=params.temperature, seed=params.seed,
                        side=params.side, on_partial=ctx.partial, backend=backend,
                        direction=direction)
    return {"layer": layer, "pos": pos, "strengths": strengths, "samples": samples, **calibrated,
            **({"component": direction.key} if direction is not None else {})}


def component_direction(spec: object, run: AdlRun, layer: int) -> Direction | None:
    """`component` = {"result": a `lens.pca` result key, "index": i}: that principal component as the steering
    vector, refused unless the PCA was read on this run's pair at this layer (None: the run's mean diff)."""
    if spec is None:
        return None
    if not (isinstance(spec, dict) and isinstance(spec.get("result"), str) and isinstance(spec.get("index"), int)
            and not isinstance(spec.get("index"), bool)):
        raise UserError("parameter 'component' must be {\"result\": PCA_RESULT, \"index\": N}",
                        "pass the `result` of a `difflens pca` answer and a component index")
    stored = results.load(spec["result"])
    if stored is None or stored.kind != PCA_KIND:
        raise UserError(f"no PCA result {spec['result']!r} in the store", "run `difflens pca RUN` (or P) first")
    read = stored.meta["payload"]
    if stored.inputs.get("pair") != PairRequest.of_run(run.request).identity() or read.get("layer") != layer:
        raise UserError(f"PCA result {spec['result']} was read on another pair or layer than run {run.run_id} "
                        f"at layer {layer}", f"steer at the PCA's layer ({read.get('layer')}) of the run it read")
    components = stored.tensors["components"]
    if not 0 <= spec["index"] < len(components):
        raise UserError(f"component {spec['index']} out of range (the PCA kept {len(components)})",
                        f"pass an index between 0 and {len(components) - 1}")
    return Direction(torch.from_numpy(components[spec["index"]].copy()),
                     {"pca": stored.key, "index": spec["index"]})
