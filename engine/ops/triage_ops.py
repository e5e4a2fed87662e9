"""The triage ops: one pair from models to a readable report; a trajectory of finetunes of one base."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from engine.adl.request import request_for
from engine.answers import memo
from engine.jobs import JobContext
from engine.ops import op
from engine.ops.adl_ops import compute
from engine.protocol import methods
from engine.protocol.methods import Trajectory, TriagePair
from engine.triage.pair_triage import triage
from engine.triage.trajectory import list_trajectories, run_trajectory

_COMPUTE_FIELDS = {f.name for f in fields(methods.AdlCompute)}


@op(methods.TRIAGE_PAIR)
def triage_pair(params: TriagePair, ctx: JobContext) -> dict[str, Any]:
    """Every stage is cached: a second triage of the same pair reads the store. The pair's `adl.compute` answer
    is kept too, so that the workbench opened on the pair (`difflens demo`, `difflens tui --base … --ft …`)
    starts with no op loaded."""
    report = triage(request_for(params), params, ctx)
    pair = {name: value for name, value in params.to_json().items() if name in _COMPUTE_FIELDS}
    memo.prefill(methods.ADL_COMPUTE, pair, lambda: compute(pair, JobContext()))
    return report


@op(methods.TRAJECTORY)
def trajectory_op(params: Trajectory, ctx: JobContext) -> dict[str, Any]:
    """Each step is a triage whose stages are cached, so a second trajectory over the same steps reads the store."""
    return run_trajectory(params, ctx)


@op(methods.TRAJECTORIES)
def trajectories_op(params: methods.NoParams, ctx: JobContext) -> dict[str, Any]:
    return list_trajectories()
