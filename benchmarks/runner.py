"""Run every step once, in one invocation: fresh-process steps first, then the pair's steps in this process.

Work happens in a temporary DIFFLENS_HOME (nothing is a cache hit, the user's store is untouched); only
the results JSON is written to the real store, under `bench/`.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.board import board
from benchmarks.child import PREFIX
from benchmarks.config import Emit, Settings
from benchmarks.corpus import write_corpus
from engine.protocol.spawn import child_env, module_argv


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def describe_device(device: str, threads: int | None) -> str:
    import torch

    if device.startswith("cuda"):
        return f"cuda: {torch.cuda.get_device_name(torch.device(device))}, torch {torch.__version__}"
    return (f"cpu: {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__} "
            f"({torch.get_num_threads()} thread{'s' if torch.get_num_threads() > 1 else ''}), "
            f"load avg {os.getloadavg()[0]:.1f}")


def child(step: str, args: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run `python -P -m benchmarks.child` and return its result line."""
    done = subprocess.run(module_argv("benchmarks.child", step, json.dumps(args)), env=child_env() | (env or {}),
                          capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith(PREFIX)]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"benchmark step {step} failed (exit {done.returncode}): " + " | ".join(tail))
    return json.loads(lines[-1][len(PREFIX):])


def _memory_ft(s: Settings) -> tuple[str, str | None]:
    """The finetuned side for joint vs sequential: an adapter on the embedded model shares its weights, so a
    second copy of the converted base (separate tensors) stands in; any other pair is used as given."""
    if s.adapter is None and s.embedded:
        from engine.embedded import embedded_checkpoint

        return str(embedded_checkpoint()), None
    return s.ft, s.adapter


def memory(s: Settings, device: str, work: Path) -> dict[str, Any]:
    """Peak memory of one ADL run, joint vs `--sequential`, each in a fresh process with its own store."""
    corpus = write_corpus(work / "memory-corpus.txt", s.memory_n)
    ft, adapter = _memory_ft(s)
    out: dict[str, Any] = {"n": s.memory_n, "ft": Path(ft).name, "gpu": device.startswith("cuda")}
    diffs = {}
    for mode in ("joint", "sequential"):
        target = work / f"mean-diff-{mode}.npy"
        got = child("adl_memory", dict(base=s.base, ft=ft, adapter=adapter, corpus=str(corpus), n=s.memory_n, k=s.k,
                                       device=s.device, dtype=s.dtype, sequential=mode == "sequential",
                                       out=str(target), threads=s.threads),
                    env={"DIFFLENS_HOME": str(work / f"home-{mode}")})
        out[mode] = got
        out[f"{mode}_mb"] = got["gpu_peak_mb"] if out["gpu"] else got["peak_rss_mb"]
        diffs[mode] = np.load(target)
    out["max_abs_diff"] = float(np.abs(diffs["joint"] - diffs["sequential"]).max())
    return out


def loads(s: Settings, work: Path, memory: dict[str, Any]) -> dict[str, Any]:
    """The base loaded from the converted cache (timed in the joint memory run's fresh process) and, for the
    embedded model with default settings, cold: GGUF conversion into an empty cache, then the load."""
    out: dict[str, Any] = {"warm": memory["joint"]["base_load"], "cold": None}
    if s.cold_load and s.embedded:
        args = dict(spec=s.base, adapter=None, device=s.device, dtype=s.dtype, threads=s.threads, cold=True)
        out["cold"] = child("load", args, env={"DIFFLENS_CACHE": str(work / "cold-cache")})
    return out


def run(s: Settings, emit: Emit) -> dict[str, Any]:
    """Every step; returns the full result (see `report.summary` for the stable keys)."""
    from store.paths import home

    started = time.perf_counter()
    real_home = home()
    with tempfile.TemporaryDirectory(prefix="difflens-bench-") as tmp, \
            tempfile.TemporaryDirectory(prefix="dlb-", dir="/tmp") as runtime:
        work = Path(tmp)
        saved_home = os.environ.get("DIFFLENS_HOME")
        os.environ["DIFFLENS_HOME"] = str(work / "home")
        try:
            result = _steps(s, work, Path(runtime), emit)
        finally:
            os.environ.pop("DIFFLENS_HOME")
            if saved_home is not None:
                os.environ["DIFFLENS_HOME"] = saved_home
    result["wall_s"] = round(time.perf_counter() - started, 1)
    result["load_avg_end"] = round(os.getloadavg()[0], 1)
    from benchmarks.report import save

    result["saved_to"] = str(save(result, real_home))
    return result


def _steps(s: Settings, work: Path, runtime: Path, emit: Emit) -> dict[str, Any]:
    """The steps in order: fresh-process ones first (nothing loaded here yet), then the pair's."""
    import torch

    if s.threads:
        torch.set_num_threads(s.threads)
    from engine.models.device import resolve_placement

    placement = resolve_placement(s.device, s.dtype)
    result: dict[str, Any] = {"device": describe_device(placement.device, s.threads),
                              "pair": f"{s.base} vs {s.ft}" + (f" + {s.adapter}" if s.adapter else ""),
                              "dtype": placement.dtype_name, "settings": s.to_json()}
    emit("replay first paint…")
    result["replay"] = child("replay", {})
    emit("engine round trips…")
    from benchmarks.engine_rt import round_trip

    result["engine"] = round_trip(runtime, s.round_trips)
    emit("ADL peak memory, joint vs sequential (fresh processes)…")
    result["memory"] = memory(s, placement.device, work)
    emit("model load, cold from the GGUF (fresh process)…" if s.cold_load and s.embedded else "model load…")
    result["load"] = loads(s, work, result["memory"])
    emit("board: adapters of one base, pairwise vs one base (fresh processes)…")
    result["board"] = board(s, work, emit, child)
    from benchmarks.pair_steps import pair_steps

    result.update(pair_steps(s, placement, work, emit))
    from benchmarks.cached import triage_rows

    result["triage"] = triage_rows(s, work, runtime, emit, child)
    from benchmarks.trajectory import trajectory_rows

    result["trajectory"] = trajectory_rows(s, work, emit, child)
    result["peak_memory_mb"] = _peaks(result)
    return result


def _peaks(r: dict[str, Any]) -> dict[str, float]:
    gauge = r.pop("gauge_peaks")
    gpu = r["memory"]["gpu"]
    rss = "gpu_peak_mb" if gpu else "peak_rss_mb"
    out = {f"adl_{name}": gauge[name] for name in ("difflens", "floor", "baseline")}
    out |= {name: gauge[name] for name in ("logit_lens", "patchscope")}
    out |= {name: gauge[f"steer_{name.removeprefix('steering_')}"] for name in ("steering_batched",
                                                                               "steering_one_by_one")}
    out |= {"board_single_pair": r["board"]["single_pair_mb"], "board_shared": r["board"]["shared_mb"]}
    out |= {"adl_joint": r["memory"]["joint_mb"], "adl_sequential": r["memory"]["sequential_mb"],
            "load_cached": r["load"]["warm"][rss]}
    if r["load"]["cold"]:
        out["load_cold"] = r["load"]["cold"][rss]
    out["replay"] = r["replay"]["peak_rss_mb"]
    out["tui_cached"] = r["triage"]["tui_cached"]["peak_rss_mb"]
    return out
