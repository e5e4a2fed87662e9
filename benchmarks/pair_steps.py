"""The steps that share the loaded pair, in this process: ADL ratios and scaling, readouts, steering."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from benchmarks import adl, readouts, steering
from benchmarks.config import Emit, Settings
from benchmarks.timing import Gauge
from engine.adl.depth import middle_layer
from engine.adl.request import AdlRequest
from engine.adl.rescale_norm import layer_norm
from engine.adl.runs import load_run
from engine.models.cache import MODELS
from engine.models.device import Placement


def pair_steps(s: Settings, placement: Placement, work: Path, emit: Emit) -> dict[str, Any]:
    request = AdlRequest(base=s.base, ft=s.ft, adapter=s.adapter, device=s.device, dtype=s.dtype)
    began = time.perf_counter()
    pair = MODELS.pair(request.base_spec, request.ft_spec, placement)
    load_s = time.perf_counter() - began
    layers = list(range(pair.n_layers))
    gauge = Gauge()
    try:
        emit(f"ADL: difflens vs floor ({s.ratio_n} texts) vs notebook baseline ({s.baseline_n} texts)…")
        ratio = adl.ratio(pair, layers, s, gauge)
        emit(f"ADL: scaling with k {list(s.ks)}…")
        by_k = adl.scale_k(pair, layers, s)
        emit(f"ADL: small batches {list(s.batch_sizes)} (per-trace overhead)…")
        by_batch = adl.scale_batch(pair, layers, s)
        emit(f"ADL: compute_adl end to end, n = {list(s.ns)}…")
        runs: list[Any] = []
        by_n = adl.scale_n(s, work, runs.append)
        run = load_run(runs[-1].key)
        diff = run.mean_diff
        norms = torch.tensor([layer_norm(run, layer) for layer in run.layers.tolist()])
        emit("readouts: logit lens, Patchscope…")
        lens = readouts.lens(pair, diff, gauge)
        patch = readouts.patch(pair, diff, norms, s.patch_positions, gauge)
        emit("steering: batched grid vs one call each vs bare generate…")
        steer = steering.steering(pair, diff[middle_layer(pair.n_layers), min(2, diff.shape[1] - 1)], s, gauge)
    finally:
        gauge.close()
    return {"pair_load_s": round(load_s, 2), "adl": {"ratio": ratio, "by_k": by_k, "by_batch": by_batch, "by_n": by_n},
            "readouts": {"logit_lens": lens, "patchscope": patch}, "steering": steer, "gauge_peaks": gauge.peaks}
