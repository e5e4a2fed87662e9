"""The board's ADL step for A adapters of one base on one corpus: pairwise (today: each pair alone, its own
base load and base pass) vs shared (one base load, one base pass, the other adapters in mixed batches).

Every way runs in fresh processes, so each peak memory is its own; the clocks start before the first model
load (loads included) and stop when the last run is stored. The A adapters are random LoRAs made here
(nonzero B, so each finetune differs from the base), written once for both ways.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from peft import LoraConfig, get_peft_model

from benchmarks.config import Emit, Settings
from benchmarks.corpus import write_corpus
from benchmarks.timing import max_rss_mb
from engine.adl.adapter_group import precompute_adapters
from engine.adl.compute import compute_adl
from engine.adl.request import AdlRequest
from engine.jobs import JobContext
from engine.models.device import resolve_placement
from engine.models.loading import load_model
from engine.models.specs import parse_spec

TARGETS = ["q_proj", "v_proj", "gate_proj", "down_proj"]
Child = Callable[..., dict[str, Any]]


def board(s: Settings, work: Path, emit: Emit, child: Child) -> dict[str, Any]:
    """Pairwise vs shared, side by side: seconds, peak memory, and the largest difference of their diffs."""
    corpus = write_corpus(work / "board-corpus.txt", s.board_n)
    emit(f"board: {s.board_adapters} random LoRA adapters of {s.base}…")
    adapters = child("board_adapters", dict(base=s.base, count=s.board_adapters, out=str(work / "board-adapters"),
                                            threads=s.threads))["adapters"]
    common = dict(base=s.base, corpus=str(corpus), n=s.board_n, k=s.k, device=s.device, dtype=s.dtype,
                  batch_size=s.batch_size, threads=s.threads)
    emit(f"board: {len(adapters)} pairs one by one (fresh process each)…")
    pairwise = [child("board_pairwise", dict(common, adapters=[adapter], out=str(work / f"board-pair-{i}")),
                      env={"DIFFLENS_HOME": str(work / f"board-home-{i}")}) for i, adapter in enumerate(adapters)]
    emit(f"board: {len(adapters)} pairs with one base (fresh process)…")
    shared = child("board_shared", dict(common, adapters=adapters, out=str(work / "board-shared")),
                   env={"DIFFLENS_HOME": str(work / "board-home-shared")})
    gpu = shared["gpu_peak_mb"] is not None
    key = "gpu_peak_mb" if gpu else "peak_rss_mb"
    pairwise_s = sum(p["seconds"] for p in pairwise)
    single_mb = max(p[key] for p in pairwise)
    pairs = [(np.load(p["diffs"][0]), np.load(d)) for p, d in zip(pairwise, shared["diffs"], strict=True)]
    diffs = [float(np.abs(alone - together).max()) for alone, together in pairs]
    scale = max(float(np.abs(alone).max()) for alone, _ in pairs)
    return {"adapters": len(adapters), "n": s.board_n, "gpu": gpu, "pairwise_s": round(pairwise_s, 2),
            "shared_s": shared["seconds"], "speedup": round(pairwise_s / shared["seconds"], 2),
            "single_pair_mb": single_mb, "shared_mb": shared[key],
            "memory_ratio": round(shared[key] / single_mb, 2), "max_abs_diff": max(diffs),
            "max_rel_diff": max(diffs) / scale if scale else 0.0,
            "ideal_from_base_pass": round(2 * len(adapters) / (len(adapters) + 1), 2)}


def make_adapters(base: str, count: int, out: str) -> dict[str, Any]:
    """`count` LoRA adapters of `base` with random B (seeded), saved under `out`."""
    model = load_model(parse_spec(base), resolve_placement("cpu", "float32"))
    peft_model = get_peft_model(model.hf, LoraConfig(r=8, target_modules=TARGETS))
    paths = []
    for index in range(count):
        generator = torch.Generator().manual_seed(index + 1)
        with torch.no_grad():
            for name, p in peft_model.named_parameters():
                if "lora_B" in name:
                    p.copy_(0.01 * torch.randn(p.shape, generator=generator))
        path = Path(out) / f"lora-{index}"
        peft_model.save_pretrained(str(path))
        paths.append(str(path))
    return {"adapters": paths}


def run_pairs(base: str, adapters: list[str], corpus: str, n: int, k: int, device: str, dtype: str,
              batch_size: int, out: str, shared: bool) -> dict[str, Any]:
    """One process: the pairs `base` vs `base + adapter`, alone (`compute_adl`) or together (mixed batches)."""
    requests = [AdlRequest(base=base, ft=base, adapter=adapter, corpus=corpus, n=n, k=k, device=device, dtype=dtype,
                           batch_size=batch_size) for adapter in adapters]
    started = time.perf_counter()
    if shared:
        precompute_adapters(requests, JobContext())
    ordered = [compute_adl(request) for request in requests]  # cache hits for what the group computed
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    diffs = []
    for index, outcome in enumerate(ordered):
        path = Path(out) / f"diff-{index}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, outcome.result.tensors["mean_diff"])
        diffs.append(str(path))
    gpu = round(torch.cuda.max_memory_allocated() / 2**20, 1) if torch.cuda.is_available() else None
    return {"seconds": round(seconds, 2), "diffs": diffs, "peak_rss_mb": round(max_rss_mb(), 1), "gpu_peak_mb": gpu}
