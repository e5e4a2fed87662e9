"""One run at a glance, as the workbench's heatmap opens with it: per layer × position norms and the report layer
with every layer's score under the layer criterion."""

from __future__ import annotations

from typing import Any

from engine.adl.runs import AdlRun
from engine.errors import ActionableError
from engine.judges.judge_config import resolve_judge
from engine.protocol.methods import TriagePair
from engine.results.calibrated_steering import cached_calibration
from engine.results.layer_choice import choose_layer
from engine.results.significance import stored_significance


def run_summary(run: AdlRun) -> dict[str, Any]:
    """The layer choice is cached (computed from the logit lens on first use); `significance` is the one a triage
    stored (None before any). A run whose models cannot be loaded here still gets its heatmap: `layer_choice` is
    then None and `layer_choice_error` says why. `calibrated`: the strengths a triage (or the workbench) calibrated
    at the chosen layer, when stored, so the workbench opens where triage left off."""
    try:
        chosen = choose_layer(run)
        choice, why_not = chosen.to_json(), None
        sig = stored_significance(run, chosen, TriagePair.null)
    except ActionableError as exc:
        choice, why_not, sig = None, str(exc), None
    diff_norm = run.mean_diff.norm(dim=-1)
    rel = diff_norm / run.base_norm.clamp_min(1e-12)
    meta = run.meta
    return {"run": run.run_id, "base": meta["base_label"], "ft": meta["ft_label"], "corpus": meta["corpus_label"],
            "n": meta["n_texts"], "k": meta["k"], "n_layers": meta["n_layers"], "d_model": meta["d_model"],
            "layers": run.layers.tolist(), "middle_layer": run.middle_layer,
            "layer_choice": choice, "layer_choice_error": why_not, "significance": sig,
            "metrics": {"diff_norm": diff_norm.tolist(), "rel_norm": rel.tolist(),
                        "base_norm": run.base_norm.tolist(), "ft_norm": run.ft_norm.tolist()},
            "sample_windows": meta.get("sample_windows", []),
            "calibrated": _calibrated(run, choice["layer"]) if choice else None}


def _calibrated(run: AdlRun, layer: int) -> dict[str, Any] | None:
    """`{"layer", "strengths": {pos: strength}}` of the stored default calibration at `layer` (None: none)."""
    try:
        cells = cached_calibration(run, layer, resolve_judge())
    except ActionableError:  # a judge configured but unusable: the workbench calibrates when asked, and says why
        return None
    return None if cells is None else {"layer": layer, "strengths": {str(c["pos"]): c["strength"] for c in cells}}
