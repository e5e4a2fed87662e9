"""A triage report as a user gets it, each through `difflens triage --json` in a fresh process (CLI, private
engine child, model loads included): `first_on_base_over_adl` the first triage on an empty store (the base pass
and the null included; the pair's sibling finetune, `Settings.sibling`, where it has one) over its own ADL
compute time (the report's `compute` timing, same run); `fresh_over_adl` the pair's own fresh triage after it
(what each further finetune of that base costs: its null and base pass are in the store) over that cold ADL
compute of a pair of this base, and `fresh_over_own_adl` over its own, whose base pass came from the store;
`cached_seconds` the same command again, fully cached; then the TUI's first paint of that cached run
(`benchmarks.workbench`)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from benchmarks.config import Emit, Settings
from engine.protocol.spawn import child_env, python_argv

CLI = "from tui.cli import main; main()"


def _cli_triage(s: Settings, env: dict[str, str], ft: str | None = None) -> tuple[float, dict[str, Any]]:
    """`ft` None: the pair's own finetune (and adapter); else another finetune of the same base."""
    adapter = ["--adapter", s.adapter] if s.adapter and ft is None else []
    argv = [*python_argv("-c", CLI), "triage", "--base", s.base, "--ft", ft or s.ft, "--device", s.device,
            "--dtype", s.dtype, "--json", *adapter]
    began = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"difflens triage failed (exit {done.returncode}): {done.stderr.strip()[-500:]}")
    return wall, json.loads(done.stdout)


def triage_rows(s: Settings, work: Path, runtime: Path, emit: Emit, child: Any) -> dict[str, Any]:
    """The sibling's triage (first on the base), the pair's fresh triage, the same command cached, and the
    workbench opened on the cached run; in a store of their own (the other steps' ADL runs must not make a
    fresh triage a cache hit)."""
    env = child_env() | {"DIFFLENS_HOME": str(work / "home-triage"),
                         "DIFFLENS_RUNTIME_DIR": str(runtime / "triage")}  # a private engine, never the user's
    if s.threads:
        env["OMP_NUM_THREADS"] = str(s.threads)
    first: tuple[float, dict[str, Any]] | None = None
    if s.sibling:
        emit(f"triage: {s.sibling} first, everything cold (its base pass and null included)…")
        first = _cli_triage(s, env, s.sibling)
    emit("triage: fresh report through the CLI (calibration, steering included)…")
    fresh_s, fresh = _cli_triage(s, env)
    first_s, first_report = first or (fresh_s, fresh)
    emit("triage: the same report fully cached, CLI and TUI first paint…")
    cached_s, cached = _cli_triage(s, env)
    paint = child("tui_cached", {"run": cached["run"]}, env=env)
    compute_s, first_compute_s = fresh["timings"]["compute"], first_report["timings"]["compute"]
    return {"fresh_seconds": round(fresh_s, 1), "adl_compute_seconds": first_compute_s,
            "fresh_over_adl": round(fresh_s / first_compute_s, 2), "own_adl_compute_seconds": compute_s,
            "fresh_over_own_adl": round(fresh_s / compute_s, 2), "fresh_timings": fresh["timings"],
            "first_on_base": s.sibling or s.ft, "first_on_base_seconds": round(first_s, 1),
            "first_on_base_adl_compute_seconds": first_compute_s,
            "first_on_base_over_adl": round(first_s / first_compute_s, 2),
            "first_on_base_timings": first_report["timings"],
            "cached_seconds": round(cached_s, 2), "cached_hit": bool(cached["cached"]),
            "cached_timings": cached["timings"], "tui_cached": paint}
