"""One readable report per pair: compute, logit lens at every layer, Patchscope and calibrated steering at
the report layer, relevance when the finetune is known, and the keyword hypothesis."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from engine.adl.compute import compute_adl
from engine.adl.request import AdlRequest
from engine.adl.runs import AdlRun, load_run
from engine.agent.keywords import keyword_hypothesis
from engine.analysis.environment import RunEnvironment, SteeringSettings
from engine.analysis.known import KnownFinetune, known_finetune
from engine.analysis.readouts import Grid, lens_grid, patchscope_cells, patchscope_json
from engine.analysis.steering import CalibrationSettings, calibrate
from engine.jobs import JobContext
from engine.readouts.relevance import embedding_token_grader, frequent_tokens, token_relevance
from engine.readouts.topk import TopTokens
from engine.steering.prompts import default_prompts

PHASES = ["compute", "logit lens", "patchscope", "calibration", "steering", "relevance"]


@dataclass
class TriageOptions:
    """Report settings; `layer` None = the middle layer, `positions` None = all k positions."""

    layer: int | None = None
    positions: list[int] | None = None
    description: str | None = None
    top_k: int = 20
    steer: bool = True
    n_prompts: int = 6
    max_strength: float | None = None
    steering: SteeringSettings = field(default_factory=lambda: SteeringSettings(max_new_tokens=48))


def triage(request: AdlRequest, options: TriageOptions, ctx: JobContext | None = None) -> dict[str, Any]:
    """The report for one pair (every stage cached, so a second call is instant)."""
    ctx = ctx or JobContext()
    timings: dict[str, float] = {}
    clock = time.monotonic()

    def phase(index: int) -> None:
        nonlocal clock
        timings[PHASES[index]] = round(time.monotonic() - clock, 3)
        clock = time.monotonic()
        ctx.progress(index + 1, len(PHASES), PHASES[index + 1] if index + 1 < len(PHASES) else "done")

    outcome = compute_adl(request, JobContext(emit=lambda e: ctx.emit({**e, "message": f"compute: {e['message']}"}),
                                              cancel_event=ctx.cancel_event))
    run = load_run(outcome.run, trust_remote_code=request.trust_remote_code)
    phase(0)
    layer = run.middle_layer if options.layer is None else options.layer
    run.layer_index(layer)
    positions = options.positions if options.positions is not None else list(range(run.mean_diff.shape[1]))
    lens = {source: lens_grid(run, source) for source in ("diff", "base", "ft")}
    phase(1)
    scope = patchscope_cells(run, layer, positions)
    phase(2)
    options.steering.prompts = list(default_prompts())[: options.n_prompts]
    env = RunEnvironment(run, layer, positions, options.steering, CalibrationSettings.for_device(
        request.placement.device, max_strength=options.max_strength))
    steering: dict[str, Any] = {}
    if options.steer and _steerable(run, layer, positions):
        steering = _steering(env, layer, ctx, phase)
    else:
        phase(3)
        phase(4)
    known = known_finetune(request.ft_spec, options.description)
    relevance = _relevance(run, lens, scope, known, options.top_k) if known else None
    similarity = _similarity(steering, known) if known and steering else None
    phase(5)
    return {
        "run": run.run_id, "base": run.meta["base_label"], "ft": run.meta["ft_label"],
        "corpus": run.meta["corpus_label"], "n": run.meta["n_texts"], "k": run.meta["k"],
        "n_layers": run.meta["n_layers"], "layer": layer, "positions": positions, "cached": outcome.cached,
        "description": known.description if known else None,
        "layers": _layers(run, lens["diff"], scope, layer, positions, relevance, options.top_k),
        "steering": steering, "steering_similarity": similarity,
        "relevance_summary": _relevance_summary(relevance) if relevance else None,
        "hypothesis": keyword_hypothesis(env) if steering else None,
        "timings": timings,
    }


def _steerable(run: AdlRun, layer: int, positions: list[int]) -> bool:
    """A zero mean diff (an identical pair) has no direction to steer along: its report has no steering."""
    return bool((run.mean_diff[run.layer_index(layer), positions].norm(dim=-1) > 0).all())


def _steering(env: RunEnvironment, layer: int, ctx: JobContext, phase: Any) -> dict[str, Any]:
    strengths = env.calibrated(layer)
    coherence = {c["pos"]: c["coherence"] for c in calibrate(env.run, layer, env.positions, env.calibration)}
    phase(3)
    table = env.steering_table(layer, on_partial=lambda p: ctx.partial({"stage": "steering", **p}))
    phase(4)
    return {str(pos): {"strength": strength, "coherence": coherence[pos],
                       "prompts": [{"prompt": s["prompt"], "steered": s["steered"], "unsteered": s["unsteered"]}
                                   for s in table.get(pos, [])]}
            for pos, strength in strengths.items()}


def _layers(run: AdlRun, lens: Grid, scope: Grid, layer: int, positions: list[int],
            relevance: dict[tuple[int, int], dict[str, float]] | None, top_k: int) -> dict[str, Any]:
    diff_norm = run.mean_diff.norm(dim=-1)
    rel_norm = diff_norm / run.base_norm.clamp_min(1e-12)
    out: dict[str, Any] = {}
    for row, lay in enumerate(run.layers.tolist()):
        cells = {}
        for pos in range(run.mean_diff.shape[1]):
            cell: dict[str, Any] = {"norm": round(float(diff_norm[row, pos]), 4),
                                    "rel_norm": round(float(rel_norm[row, pos]), 4),
                                    "logit_lens": lens.pairs(row, pos, k=top_k), "patchscope": None,
                                    "relevance": relevance.get((lay, pos)) if relevance else None}
            if lay == layer and pos in positions:
                cell["patchscope"] = patchscope_json(scope, positions.index(pos), top_k)
            cells[str(pos)] = cell
        out[str(lay)] = cells
    return out


def _as_top(grid: Grid) -> TopTokens:
    return TopTokens(torch.from_numpy(grid.ids), torch.from_numpy(grid.probs), np.array(grid.tokens, dtype=object))


def _relevance(run: AdlRun, lens: dict[str, Grid], scope: Grid, known: KnownFinetune,
               top_k: int) -> dict[tuple[int, int], dict[str, float]]:
    """Share of relevant top-k tokens per cell for the diff, base and finetuned lens, and Patchscope."""
    grader = embedding_token_grader(known.training_texts[:20])
    frequent = frequent_tokens(_as_top(lens["base"]), top_k=top_k)
    every = {t for grid in (*lens.values(), scope)
             for t in np.asarray(grid.tokens, dtype=object)[..., :top_k].ravel().tolist()}
    grader(known.description, sorted(every))  # one embedding call warms the grader for every cell
    out: dict[tuple[int, int], dict[str, float]] = {}
    for row, lay in enumerate(run.layers.tolist()):
        for pos in range(run.mean_diff.shape[1]):
            cell = {}
            for source, grid in lens.items():
                tokens = grid.tokens[row][pos][:top_k]
                cell[source] = round(token_relevance(tokens, grid.probs[row, pos, :top_k].tolist(),
                                                     known.description, grader, frequent=frequent).share, 3)
            out[(lay, pos)] = cell
    for index, pos in enumerate(scope.meta["positions"]):
        best = scope.meta["scales"].index(scope.meta["best_scale"][index])
        tokens = scope.tokens[index][best][:top_k]
        out[(scope.meta["layer"], pos)]["patchscope"] = round(token_relevance(
            tokens, scope.probs[index, best, :top_k].tolist(), known.description, grader, frequent=frequent).share, 3)
    return out


def _relevance_summary(relevance: dict[tuple[int, int], dict[str, float]]) -> dict[str, Any]:
    """Best layer by mean diff-lens relevance over positions, and that layer's numbers."""
    by_layer: dict[int, list[dict[str, float]]] = {}
    for (lay, _), cell in relevance.items():
        by_layer.setdefault(lay, []).append(cell)
    means = {lay: sum(c["diff"] for c in cells) / len(cells) for lay, cells in by_layer.items()}
    best = max(means, key=lambda lay: means[lay])
    peak = max(relevance.items(), key=lambda item: item[1]["diff"])
    return {"best_layer": best, "best_layer_mean_diff_relevance": round(means[best], 3),
            "best_cell": {"layer": peak[0][0], "pos": peak[0][1], **peak[1]},
            "per_layer_mean": {str(lay): round(v, 3) for lay, v in sorted(means.items())}}


def _similarity(steering: dict[str, Any], known: KnownFinetune) -> dict[str, Any] | None:
    from engine.steering.similarity import steering_similarity

    steered = [p["steered"] for cell in steering.values() for p in cell["prompts"]]
    unsteered = [p["unsteered"] for cell in steering.values() for p in cell["prompts"]]
    if not steered or not known.training_texts:
        return None
    sim = steering_similarity(steered, unsteered, known.training_texts)
    return {"steered": round(sim.steered, 4), "unsteered": round(sim.unsteered, 4), "gain": round(sim.gain, 4)}
