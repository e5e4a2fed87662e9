"""Steps that need a fresh process: the cold model load (GGUF conversion, then the load) and the peak memory
of one ADL run, joint vs `--sequential` (each in its own process, so the peak is that run's alone); the joint
run also times loading the base from the converted cache.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.timing import max_rss_mb


def _gpu_peak_mb() -> float | None:
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**20, 1) if torch.cuda.is_available() else None


def load(spec: str, adapter: str | None, device: str, dtype: str, cold: bool) -> dict[str, Any]:
    """Time loading `spec`; `cold` converts the embedded GGUF first (the caller points DIFFLENS_CACHE at an
    empty directory)."""
    began = time.perf_counter()
    from engine.embedded import embedded_checkpoint
    from engine.models.device import resolve_placement
    from engine.models.loading import load_model
    from engine.models.specs import parse_spec

    imported = time.perf_counter() - began
    parsed = parse_spec(spec, adapter=adapter)
    convert = 0.0
    if cold:
        start = time.perf_counter()
        embedded_checkpoint()
        convert = time.perf_counter() - start
    start = time.perf_counter()
    load_model(parsed, resolve_placement(device, dtype))
    seconds = time.perf_counter() - start
    return {"import_s": round(imported, 2), "convert_s": round(convert, 2), "load_s": round(seconds, 2),
            "total_s": round(convert + seconds, 2), "peak_rss_mb": round(max_rss_mb(), 1),
            "gpu_peak_mb": _gpu_peak_mb()}


def adl_memory(base: str, ft: str, adapter: str | None, corpus: str, n: int, k: int, device: str, dtype: str,
               sequential: bool, out: str) -> dict[str, Any]:
    """One `compute_adl` from a cold model cache; the mean diff goes to `out` (.npy) for the parent to compare.

    Joint mode first loads the base alone, timed: a fresh process reading the converted cache is what
    "model load from the cache" means, and `compute_adl` then finds it loaded.
    """
    from engine.adl.compute import compute_adl
    from engine.adl.request import AdlRequest
    from engine.models.cache import MODELS

    request = AdlRequest(base=base, ft=ft, adapter=adapter, corpus=corpus, n=n, k=k, device=device, dtype=dtype,
                         sequential=sequential)
    loaded: dict[str, Any] = {}
    if not sequential:
        start = time.perf_counter()
        MODELS.model(request.base_spec, request.placement)
        loaded = {"load_s": round(time.perf_counter() - start, 2), "peak_rss_mb": round(max_rss_mb(), 1),
                  "gpu_peak_mb": _gpu_peak_mb()}
    outcome = compute_adl(request)
    np.save(Path(out), outcome.result.tensors["mean_diff"])
    return {"sequential": sequential, "peak_rss_mb": round(max_rss_mb(), 1), "gpu_peak_mb": _gpu_peak_mb(),
            "base_load": loaded}
