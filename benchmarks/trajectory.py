"""A trajectory of T steps against T separate triages of the same finetunes, side by side.

The steps are the weight interpolation base + t·(ft − base) of a LoRA finetune (the pair's own adapter, else a
random one made here). Separately, each step is one triage in a fresh process and a fresh store (its own model
load, base pass and null, as T `difflens triage` calls would pay); together, one `trajectory` in a fresh
process and store (one load, one base pass, one null, the adapters in mixed batches). Both without steering
(a trajectory's default), with the same null size.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from benchmarks.config import Emit, Settings
from benchmarks.corpus import write_corpus
from engine.adl.request import request_for
from engine.models.specs import parse_spec
from engine.protocol.methods import Trajectory
from engine.triage.pair_triage import triage
from engine.triage.trajectory import run_trajectory
from engine.triage.trajectory_steps import trajectory_steps

Child = Any


def _lora(s: Settings) -> bool:
    spec = parse_spec(s.ft, adapter=s.adapter)
    return bool(spec.adapter) and Path(spec.adapter or "").is_dir() and spec.base == parse_spec(s.base)


def trajectory_rows(s: Settings, work: Path, emit: Emit, child: Child) -> dict[str, Any]:
    """Seconds of T separate triages (summed) and of one trajectory over the same T steps, and their ratio."""
    corpus = write_corpus(work / "trajectory-corpus.txt", s.board_n)
    if _lora(s):
        ft, adapter = s.ft, s.adapter
    else:
        emit("trajectory: a random LoRA adapter of the base to interpolate…")
        ft, adapter = s.base, child("board_adapters", dict(base=s.base, count=1, out=str(work / "traj-adapter"),
                                                           threads=s.threads))["adapters"][0]
    common = dict(base=s.base, ft=ft, adapter=adapter, corpus=str(corpus), n=s.board_n, k=s.k, device=s.device,
                  dtype=s.dtype, batch_size=s.batch_size, null=s.trajectory_null, threads=s.threads)
    points = list(s.trajectory_points)
    emit(f"trajectory: {len(points)} steps as separate triages (fresh process and store each)…")
    separate = [child("trajectory_separate", dict(common, interpolate=[t]),
                      env={"DIFFLENS_HOME": str(work / f"traj-home-{i}")}) for i, t in enumerate(points)]
    emit(f"trajectory: the same {len(points)} steps as one trajectory (fresh process and store)…")
    together = child("trajectory_shared", dict(common, interpolate=points),
                     env={"DIFFLENS_HOME": str(work / "traj-home-shared")})
    separate_s = sum(run["seconds"] for run in separate)
    return {"steps": len(points), "points": points, "n": s.board_n, "null": s.trajectory_null,
            "separate_s": round(separate_s, 2), "trajectory_s": together["seconds"],
            "separate_over_trajectory": round(separate_s / together["seconds"], 2),
            "z_separate": [run["z"][0] for run in separate], "z_trajectory": together["z"]}


def run_steps(base: str, ft: str, adapter: str | None, corpus: str, n: int, k: int, device: str, dtype: str,
              batch_size: int, null: int, interpolate: list[float], together: bool) -> dict[str, Any]:
    """One process: the trajectory over `interpolate`, or (one point) that step's triage on its own."""
    params = Trajectory(base=base, ft=ft, adapter=adapter, corpus=corpus, n=n, k=k, device=device, dtype=dtype,
                        batch_size=batch_size, null=null, interpolate=interpolate)
    started = time.perf_counter()
    if together:
        z = [row["z"] for row in run_trajectory(params)["steps"]]
    else:
        (step,) = trajectory_steps(params, request_for(params))[1]
        z = [triage(step.request, params)["significance"].get("z")]
    return {"seconds": round(time.perf_counter() - started, 2), "z": z}
