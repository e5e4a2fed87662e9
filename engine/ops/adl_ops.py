"""Ops for ADL step 1: compute a pair's mean difference, summarise one run (the list of runs: `catalog_ops`)."""

from __future__ import annotations

from typing import Any

from engine.adl.compute import compute_adl
from engine.adl.request import request_for
from engine.adl.runs import AdlRun, load_run
from engine.jobs import JobContext
from engine.ops import op
from engine.protocol import methods
from engine.results.run_summary import run_summary
from store import results


def run_of(run: str, trust_remote_code: bool) -> AdlRun:
    """The cached run named `run` (its whole id or a unique prefix); custom model code only if the params ask
    for it now."""
    return load_run(run, trust_remote_code=trust_remote_code)


@op(methods.ADL_COMPUTE)
def compute(params: methods.AdlCompute, ctx: JobContext) -> dict[str, Any]:
    """Cached by content: the same settings and weights give the same run."""
    outcome = compute_adl(request_for(params), ctx)
    meta = outcome.result.meta
    return {"run": outcome.run, "cached": outcome.cached, "shape": list(outcome.result.tensors["mean_diff"].shape),
            "n_layers": meta["n_layers"], "k": meta["k"], "d_model": meta["d_model"], "layers": meta["layers"],
            "base": meta["base_label"], "ft": meta["ft_label"], "corpus": meta["corpus_label"],
            "n": meta["n_texts"], "seconds": meta["seconds"], "memory_plan": outcome.memory_plan,
            "file": str(results.file_for(outcome.run))}


@op(methods.ADL_SUMMARY)
def summary(params: methods.RunParams, ctx: JobContext) -> dict[str, Any]:
    """Per layer × position norms of one run (the heatmap's metrics) and the report layer (`run_summary`)."""
    return run_summary(run_of(params.run, params.trust_remote_code))
