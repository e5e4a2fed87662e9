"""A triage report as a user gets it, fresh and then fully cached, each through `difflens triage --json` in a
fresh process (CLI, private engine child, model loads included): `fresh_over_adl` is the fresh triage's wall
time over its own ADL compute time (the report's `compute` timing, same run), `cached_seconds` the second,
fully cached call; then the TUI's first paint of that cached run (`benchmarks.workbench`)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from benchmarks.config import Emit, Settings
from engine.protocol.spawn import child_env, python_argv

CLI = "from tui.cli import main; main()"


def _cli_triage(s: Settings, env: dict[str, str]) -> tuple[float, dict[str, Any]]:
    argv = [*python_argv("-c", CLI), "triage", "--base", s.base, "--ft", s.ft, "--device", s.device,
            "--dtype", s.dtype, "--json", *(["--adapter", s.adapter] if s.adapter else [])]
    began = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"difflens triage failed (exit {done.returncode}): {done.stderr.strip()[-500:]}")
    return wall, json.loads(done.stdout)


def triage_rows(s: Settings, work: Path, runtime: Path, emit: Emit, child: Any) -> dict[str, Any]:
    """Fresh triage, the same command cached, and the workbench opened on the cached run; in a store of its
    own (the other steps' ADL runs must not make the fresh triage a cache hit)."""
    env = child_env() | {"DIFFLENS_HOME": str(work / "home-triage"),
                         "DIFFLENS_RUNTIME_DIR": str(runtime / "triage")}  # a private engine, never the user's
    if s.threads:
        env["OMP_NUM_THREADS"] = str(s.threads)
    emit("triage: fresh report through the CLI (calibration, steering included)…")
    fresh_s, fresh = _cli_triage(s, env)
    emit("triage: the same report fully cached, CLI and TUI first paint…")
    cached_s, cached = _cli_triage(s, env)
    paint = child("tui_cached", {"run": cached["run"]}, env=env)
    compute_s = fresh["timings"]["compute"]
    return {"fresh_seconds": round(fresh_s, 1), "adl_compute_seconds": compute_s,
            "fresh_over_adl": round(fresh_s / compute_s, 2), "fresh_timings": fresh["timings"],
            "cached_seconds": round(cached_s, 2), "cached_hit": bool(cached["cached"]),
            "cached_timings": cached["timings"], "tui_cached": paint}
