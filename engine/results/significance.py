"""How sure a report is: the layer criterion of the finetune against random adapters made the same way.

The null: `n_null` random adapters with the finetune's delta profile's null shape (same modules and rank, its
RMS ‖ΔW‖ to an octave; engine/models/null_adapters.py says why that is sound), each run through the same
pipeline as the finetune (the same base pass, so the same corpus windows, n, k and seed; the same logit lens
and the same layer criterion). Their per-layer
scores are computed once per base pass, null shape, criterion and `n_null`, and kept in the store, so the
finetunes of one base and recipe pay for them once, the first.

The statistic: when the criterion chose the layer, the run's best-layer score against each null's best-layer
score (the max is taken on both sides, so the choice is no advantage); when the user named the layer, that
layer's score against the nulls' scores at that layer. Reported: the empirical p-value (1 + #null ≥ obs) /
(N + 1) and z = (obs − mean) / sd of the null. A trace is *readable* when it beats every null and z ≥
`READABLE_Z`; with N = 16 the smallest p is 1/17, so the z-score carries the decision and the empirical p
guards it against a null far from normal. An identical pair (its diff is zero) reads no trace with no null.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Final

import numpy as np

from engine.adl.adapter_group import precompute_adapters
from engine.adl.base_pass import base_inputs
from engine.adl.compute import compute_adl
from engine.adl.request import AdlRequest
from engine.adl.runs import AdlRun, load_run
from engine.errors import UserError
from engine.jobs import JobContext
from engine.models.cache import MODELS
from engine.models.null_adapters import DeltaProfile, full_profile, lora_profile, null_adapter
from engine.results.layer_choice import Criterion, LayerChoice, layer_scores
from store import results

KIND = "null"
PROFILE_KIND = "deltaprofile"
NULL_DESIGN: Final = "null-shape/rms-octave"  # how the null adapters are shaped: a change here must rename it
READABLE_Z: Final = 3.0
SD_FLOOR: Final = 0.01  # scores are rounded to 1e-4; a null that never moves is not infinitely sure
NO_TRACE: Final = "no readable trace"
READABLE: Final = "readable trace"


@dataclass(frozen=True)
class NullTable:
    """Per null adapter, per layer, the criterion score (`scores[i][row]`, rows as the run's layers)."""

    scores: np.ndarray
    layers: list[int]
    runs: list[str]
    profile: dict[str, Any]
    seconds: float


def delta_profile(request: AdlRequest) -> DeltaProfile:
    """The finetune's delta profile, cached by the two models' identities (a full finetune's needs both loaded)."""
    base, ft = request.base_spec, request.ft_spec
    inputs = {"base": base.identity(), "ft": ft.identity()}
    if (hit := results.lookup(PROFILE_KIND, inputs)) is not None:
        return DeltaProfile.from_json(hit.meta["profile"])
    if ft.adapter and ft.base == base:
        profile = lora_profile(Path(ft.adapter))
    elif ft.adapter or base.adapter:
        raise UserError("the null is built for an adapter on its own base or a full finetune",
                        "name the adapter's base as --base, or pass --null 0 to skip the significance test")
    else:
        if request.backend != "local":
            raise UserError("a full finetune's null needs both models' weights here, which NDIF does not load",
                            "pass --null 0 with --backend ndif, or run locally")
        pair = MODELS.pair(base, ft, request.placements.base, request.placements.ft)
        profile = full_profile(pair.base, pair.ft)
    results.save(PROFILE_KIND, inputs, {"norms": np.asarray([m[2] for m in profile.modules.values()], np.float64)},
                 {"profile": profile.to_json()})
    return profile


def null_table(request: AdlRequest, run: AdlRun, profile: DeltaProfile, n_null: int, criterion: Criterion,
               ctx: JobContext | None = None) -> NullTable:
    """The null's per-layer criterion scores, from the store when this base pass and profile had them."""
    ctx = ctx or JobContext()
    shape = profile.null_shape()
    if (hit := results.lookup(KIND, _null_inputs(request, run, shape, n_null, criterion))) is None:
        started = time.monotonic()
        requests = [replace(request, ft=request.base, adapter=str(null_adapter(profile, request.base, seed)))
                    for seed in range(n_null)]
        ctx.progress(0, n_null, f"null: {n_null} random adapters of the finetune's rank and norm")
        precompute_adapters(requests, ctx)
        rows, run_ids = [], []
        for done, null_request in enumerate(requests, 1):
            null_run = load_run(compute_adl(null_request, ctx).run, request=null_request)
            scores, _ = layer_scores(null_run, criterion)
            rows.append([scores[lay] for lay in null_run.layers.tolist()])
            run_ids.append(null_run.run_id)
            ctx.progress(done, n_null, f"null: {done}/{n_null} random adapters scored")
        meta = {"layers": run.layers.tolist(), "runs": run_ids, "profile": shape.summary(),
                "seconds": round(time.monotonic() - started, 3)}
        hit = results.save(KIND, _null_inputs(request, run, shape, n_null, criterion),
                           {"scores": np.asarray(rows, np.float32)}, meta)
    return _table(hit)


def _null_inputs(request: AdlRequest, run: AdlRun, shape: DeltaProfile, n_null: int,
                 criterion: Criterion) -> dict[str, Any]:
    """What the null depends on: the base pass (base, corpus, n, k, seed, layers, dtype), the null shape,
    the criterion and N; not the finetune itself, so finetunes of one base and recipe share it."""
    return {"base_pass": base_inputs(request, int(run.meta["n_layers"])), "profile": shape.key(),
            "criterion": asdict(criterion), "n_null": n_null}


def table_of(sig: dict[str, Any]) -> NullTable | None:
    """The null table a verdict was computed from (None: untested, or an identical pair with no null)."""
    if not sig.get("null_runs"):
        return None
    layers = [int(lay) for lay in sig["null_layer_scores"]]
    scores = np.asarray([sig["null_layer_scores"][str(lay)] for lay in layers], np.float32).T
    return NullTable(scores, layers, sig["null_runs"], sig["null_profile"], sig["null_seconds"])


def _table(hit: results.Result) -> NullTable:
    return NullTable(hit.tensors["scores"], hit.meta["layers"], hit.meta["runs"], hit.meta["profile"],
                     hit.meta["seconds"])


def stored_significance(run: AdlRun, choice: LayerChoice, n_null: int) -> dict[str, Any] | None:
    """The significance a triage of this run stored, read from the store alone (None: no triage tested it)."""
    if not bool(run.mean_diff.abs().max() > 0):
        return _verdict({"readable": False, "identical": True, "observed": 0.0, "n_null": 0})
    request = run.request
    profile = results.lookup(PROFILE_KIND, {"base": request.base_spec.identity(), "ft": request.ft_spec.identity()})
    if profile is None:
        return None
    shape = DeltaProfile.from_json(profile.meta["profile"]).null_shape()
    hit = results.lookup(KIND, _null_inputs(request, run, shape, n_null, choice.criterion))
    return _verdict(compare(choice, _table(hit))) if hit is not None else None


def significance(request: AdlRequest, run: AdlRun, choice: LayerChoice, n_null: int,
                 ctx: JobContext | None = None, profile_of: AdlRequest | None = None) -> dict[str, Any]:
    """The report's verdict against its null: `readable`, the numbers, and the one sentence every view shows.
    `profile_of` names the finetune whose delta profile the null copies (None: this one; a trajectory's steps
    share their last step's, so one null serves them all)."""
    if not bool(run.mean_diff.abs().max() > 0):
        return _verdict({"readable": False, "identical": True, "observed": 0.0, "n_null": 0})
    if n_null <= 0:
        return {"readable": None, "tested": False, "statement": "not tested against a null (--null 0)"}
    profile = delta_profile(profile_of or request)
    if profile.empty:
        return _verdict({"readable": False, "identical": True, "observed": 0.0, "n_null": 0})
    table = null_table(request, run, profile, n_null, choice.criterion, ctx)
    return _verdict(compare(choice, table))


def compare(choice: LayerChoice, table: NullTable) -> dict[str, Any]:
    """The statistic (see the module docstring) of `choice` against `table`."""
    chosen = choice.by == "criterion"
    observed = max(choice.scores.values(), default=0.0) if chosen else choice.scores.get(choice.layer, 0.0)
    scores = np.round(table.scores.astype(np.float64), 4)  # as the criterion rounds: a tie is a tie
    null = scores.max(axis=1) if chosen else scores[:, table.layers.index(choice.layer)]
    tested = against(observed, null)
    return {"readable": tested.pop("clears"), "identical": False, **tested,
            "statistic": "best-layer score" if chosen else f"layer {choice.layer} score", "threshold_z": READABLE_Z,
            "null_layer_scores": {str(lay): [round(float(s), 4) for s in table.scores[:, row]]
                                  for row, lay in enumerate(table.layers)},
            "null_profile": table.profile, "null_runs": table.runs, "null_seconds": table.seconds}


def against(observed: float, null: np.ndarray) -> dict[str, Any]:
    """One number against its null: mean, sd, max, z, the empirical p (a tie counts against the finetune) and
    `clears` (beats every null and z ≥ `READABLE_Z`); every test of a report uses this one rule."""
    n = len(null)
    mean = float(null.mean())
    sd = float(null.std(ddof=1)) if n > 1 else 0.0
    z = (observed - mean) / max(sd, SD_FLOOR)
    p = (1 + int((null >= observed).sum())) / (n + 1)
    return {"observed": round(observed, 4), "null_mean": round(mean, 4), "null_sd": round(sd, 4),
            "null_max": round(float(null.max()), 4), "z": round(z, 2), "p": round(p, 4), "n_null": n,
            "clears": observed > float(null.max()) and z >= READABLE_Z}


def with_evidence(sig: dict[str, Any], relevance: dict[str, Any] | None,
                  steering_gain: dict[str, Any] | None) -> dict[str, Any]:
    """The verdict with the relevance and steering gain tests added (engine/results/null_evidence.py) and its
    statement saying them; the verdict itself stays the criterion's."""
    extra = {name: test for name, test in (("relevance", relevance), ("steering_gain", steering_gain)) if test}
    if not extra:
        return sig
    out = {**sig, **extra}
    return {**out, "statement": statement(out)}


def _verdict(sig: dict[str, Any]) -> dict[str, Any]:
    return {**sig, "tested": True, "verdict": READABLE if sig["readable"] else NO_TRACE, "statement": statement(sig)}


def statement(sig: dict[str, Any]) -> str:
    """The sentence every view shows (terminal, HTML, JSON, board, workbench): written here only."""
    if sig.get("identical"):
        return f"{NO_TRACE}: the two models' activations do not differ (an identical pair)"
    null = (f"random adapters of the same rank and norm score {sig['null_mean']:.3f} ± {sig['null_sd']:.3f} "
            f"(max {sig['null_max']:.3f}, N = {sig['n_null']})")
    numbers = f"z = {_fmt_z(sig['z'])}, p = {sig['p']:.3f}"
    if sig["readable"]:
        return f"{READABLE}: {sig['statistic']} {sig['observed']:.3f} against {null}; {numbers}{_evidence(sig)}"
    within = f"{sig['statistic']} {sig['observed']:.3f} is within the null ({null}; {numbers})"
    return f"{NO_TRACE}: {within}{_evidence(sig)}"


def _evidence(sig: dict[str, Any]) -> str:
    """"; relevance 0.420 vs null 0.100 ± 0.030 (max 0.150): clears it (z 10.7, p 0.111)" per further test."""
    parts = []
    for name, label in (("relevance", "relevance"), ("steering_gain", "steering gain")):
        if not (test := sig.get(name)):
            continue
        if not test["tested"]:
            parts.append(test["statement"])
            continue
        verdict = "clears it" if test["clears"] else "within it"
        parts.append(f"{label} {test['observed']:.3f} vs null {test['null_mean']:.3f} ± {test['null_sd']:.3f} "
                     f"(max {test['null_max']:.3f}): {verdict} (z {_fmt_z(test['z'])}, p {test['p']:.3f})")
    return "".join(f"; {part}" for part in parts)


def _fmt_z(z: float) -> str:
    return "∞" if math.isinf(z) else f"{z:.1f}"


def headline(sig: dict[str, Any], hypothesis: dict[str, Any] | None) -> str:
    """What a report leads with: the hypothesis only when its evidence clears the null, else the verdict."""
    if sig.get("readable") is False or not hypothesis:
        return str(sig["statement"])
    return str(hypothesis["summary"])


def board_significance(sig: dict[str, Any]) -> dict[str, Any]:
    """What a board row keeps of a report's significance (the null's per-layer scores stay in the report)."""
    return {name: sig.get(name) for name in ("readable", "verdict", "statement", "observed", "z", "p", "n_null",
                                              "null_mean", "null_sd", "null_max", "relevance", "steering_gain")}
