"""A trajectory: one triage per step of a series of finetunes of one base, on one base pass and one null.

The base side of every step's ADL run is the same numbers (same base, corpus, n, k, seed, layers, dtype), so
the base pass is computed once (by the first step that differs from the base, or found in the store) and every
other step runs only its finetuned side; LoRA steps (checkpoints, interpolation points) run together in
mixed-adapter batches, one forward for all of them. A step that is the base itself (step 0, t = 0) runs
nothing: its diff is zero. The significance test's null copies the last step's delta profile, so it is
computed (or found) once and every step is tested against the same random adapters. Per step the result keeps
the verdict (z, p), the chosen layer, the headline tokens there and, with `steer`, the steering gain.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import numpy as np

from engine.adl.adapter_group import precompute_adapters
from engine.adl.compute import compute_adl
from engine.adl.request import AdlRequest, request_for
from engine.jobs import JobContext
from engine.protocol.methods import Trajectory
from engine.triage.pair_triage import triage
from engine.triage.trajectory_steps import AXIS, Step, trajectory_steps
from store import results

KIND = "trajectory"
HEADLINE_TOKENS = 6


def run_trajectory(params: Trajectory, ctx: JobContext | None = None) -> dict[str, Any]:
    """Every step's triage (cached stages are read, not recomputed) and the per-step table."""
    ctx = ctx or JobContext()
    request = request_for(params)
    request.validate()
    series, steps = trajectory_steps(params, request)
    started = time.monotonic()
    with ctx.stage("shared base pass"):
        _shared_pass(steps, ctx)
    # Patchscope and relevance only beside steering: a step's row reads neither (its workbench view computes them)
    null_profile_of = _null_reference(steps)
    rows = []
    for index, step in enumerate(steps):
        ctx.progress(index, len(steps), f"{step.label} ({index + 1}/{len(steps)})")
        with ctx.stage(step.label):
            report = triage(step.request, params, ctx, null_profile_of=null_profile_of, patchscope=params.steer)
        rows.append(step_row(step, report))
        ctx.partial({"stage": "trajectory", "step": rows[-1]})
    ctx.progress(len(steps), len(steps), "done")
    seconds = round(time.monotonic() - started, 3)
    result: dict[str, Any] = {"series": series, "axis": AXIS[series], "base": request.base_spec.label(),
              "ft": request.ft, "corpus": request.corpus_spec.label(), "n": request.n, "k": request.k,
              "null": params.null, "steer": params.steer, "steps": rows,
              "seconds": seconds}
    stored = results.save(KIND, _inputs(result), {"z": np.asarray([_z(r) for r in rows], np.float32)},
                          result, seconds=seconds)
    return {"trajectory": stored.key, **result}


def _shared_pass(steps: list[Step], ctx: JobContext) -> None:
    """The base pass once, then every differing step's finetuned side (adapters in mixed batches): the steps'
    triages then find their runs stored."""
    differing = [s.request for s in steps if s.request.ft_spec != s.request.base_spec]
    if not differing:
        return
    compute_adl(differing[0], ctx)  # stores the base pass (or finds the run)
    precompute_adapters(differing[1:], ctx)


def _null_reference(steps: list[Step]) -> AdlRequest | None:
    """The finetune whose delta profile the shared null copies: the last step (the finetune itself)."""
    last = steps[-1].request
    return last if last.ft_spec != last.base_spec else None


def step_row(step: Step, report: dict[str, Any]) -> dict[str, Any]:
    """What the trajectory table shows of one step's report."""
    sig = report["significance"]
    choice = report["layer_choice"]
    similarity = report.get("steering_similarity") or {}
    return {"label": step.label, "x": step.x, "run": report["run"], "ft": report["ft"],
            "readable": sig.get("readable"), "identical": bool(sig.get("identical")), "z": sig.get("z"),
            "p": sig.get("p"), "threshold_z": sig.get("threshold_z"), "observed": sig.get("observed"),
            "layer": report["layer"], "layer_by": choice["by"],
            "score": choice["scores"].get(str(report["layer"])), "tokens": headline_tokens(report),
            "rel_norm": _rel_norm(report), "gain": similarity.get("gain"), "statement": sig.get("statement"),
            "headline": report.get("headline")}


def headline_tokens(report: dict[str, Any], n: int = HEADLINE_TOKENS) -> list[str]:
    """The logit lens's top tokens of the mean diff at the chosen layer, their probability summed over the
    positions after the first (whose odd vector the layer criterion leaves out too)."""
    row = report["layers"][str(report["layer"])]
    positions = [p for p in row if p != "0"] or list(row)
    mass: dict[str, float] = defaultdict(float)
    for p in positions:
        for token, prob in row[p]["logit_lens"]:
            mass[token] += float(prob)
    if all(row[p]["norm"] == 0 for p in positions):
        return []
    return [token for token, _ in sorted(mass.items(), key=lambda item: -item[1])[:n]]


def _rel_norm(report: dict[str, Any]) -> float:
    row = report["layers"][str(report["layer"])]
    values = [cell["rel_norm"] for p, cell in row.items() if p != "0"] or [c["rel_norm"] for c in row.values()]
    return round(sum(values) / len(values), 4)


def _z(row: dict[str, Any]) -> float:
    return float(row["z"]) if isinstance(row.get("z"), int | float) else float("nan")


def _inputs(result: dict[str, Any]) -> dict[str, Any]:
    """What a stored trajectory is keyed by: its series and the runs of its steps, with the report settings."""
    return {"series": result["series"], "runs": [row["run"] for row in result["steps"]],
            "labels": [row["label"] for row in result["steps"]], "null": result["null"], "steer": result["steer"]}


def list_trajectories() -> dict[str, Any]:
    """Stored trajectories, newest first, one row each (the steps' runs stay out of the run list), and the
    latest one whole (the workbench's start screen lists its steps)."""
    stored = results.list_results(KIND)
    rows = [{"trajectory": r["key"], "series": r["meta"]["series"], "base": r["meta"]["base"], "ft": r["meta"]["ft"],
             "steps": len(r["meta"]["steps"]), "created": r["created"]} for r in stored]
    return {"trajectories": rows, "latest": {"trajectory": stored[0]["key"], **stored[0]["meta"]} if stored else None}
