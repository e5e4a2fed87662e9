"""One readable report per pair: compute, logit lens at every layer, the report layer chosen from that
evidence (engine/results/layer_choice.py), Patchscope and calibrated steering at it, relevance when the
finetune is known, and the keyword hypothesis."""

from __future__ import annotations

import contextlib
import time
from dataclasses import replace
from typing import Any

import numpy as np

from engine.adl.compute import compute_adl
from engine.adl.request import AdlRequest
from engine.adl.runs import AdlRun, load_run
from engine.agent.keywords import keyword_hypothesis
from engine.agent.recorded import RecordedEnvironment
from engine.agent.run_environment import RunEnvironment, SteeringSettings
from engine.answers import memo
from engine.jobs import JobContext
from engine.judges.judge_config import Judge, resolve_judge
from engine.protocol import methods
from engine.protocol.methods import REPORT_STEERING, TriageSettings
from engine.readouts.relevance import frequent_tokens
from engine.results.calibrated_steering import check_protocol
from engine.results.judged_relevance import Cells, relevance_cells, relevance_summary
from engine.results.known_finetune import KnownFinetune, known_finetune
from engine.results.layer_choice import LayerChoice, choose_layer, parse_layer
from engine.results.null_evidence import gain_null, observed_relevance, relevance_null
from engine.results.organism_pool import finetune_organism
from engine.results.paper_relevance import paper_patchscope, paper_relevance
from engine.results.readout_cells import Grid, lens_grid, patchscope_json
from engine.results.run_summary import run_summary
from engine.results.significance import NullTable, headline, significance, table_of, with_evidence
from engine.steering.similarity import steering_similarity
from engine.triage.hypothesis import recorded_from_report
from engine.triage.report_protocol import report_protocol
from store import results
from store.hashing import json_sha256

PHASES = ["compute", "logit lens", "null", "patchscope", "calibration", "steering", "relevance"]


# the report's steering samples per prompt and their length (`REPORT_STEERING`'s: the workbench's first `r`)
REPORT_SAMPLES = SteeringSettings(samples=REPORT_STEERING.n_samples, max_new_tokens=REPORT_STEERING.max_new_tokens)


def triage(request: AdlRequest, options: TriageSettings, ctx: JobContext | None = None, *,
           steering_samples: SteeringSettings = REPORT_SAMPLES, null_profile_of: AdlRequest | None = None,
           patchscope: bool = True) -> dict[str, Any]:
    """The report for one pair (every stage cached, so a second call is instant). `options`: its report settings
    (`layer` None = chosen from the evidence, a number or `middle`; `positions` None = all k; `judge` None = the
    configured one; `protocol` None = the default). Beside them: `steering_samples` per prompt, whose delta
    profile the null copies (`null_profile_of`, None: this finetune's), and `patchscope` False for no Patchscope
    and no relevance (a trajectory step without steering)."""
    ctx = ctx or JobContext()
    judge = resolve_judge(options.judge)
    protocol = report_protocol(options.protocol)
    request = protocol.run_request(request)
    calibration = protocol.calibration(request.placement.device, options.max_strength)
    requested_layer = protocol.report_layer(parse_layer(options.layer))
    check_protocol(calibration, judge)
    timings: dict[str, float] = {}
    clock = time.monotonic()

    stage = contextlib.ExitStack()  # the running phase names the steps reported inside it ("calibration: tokens")

    def phase(index: int) -> None:
        nonlocal clock
        timings[PHASES[index]] = round(time.monotonic() - clock, 3)
        clock = time.monotonic()
        stage.close()
        ctx.progress(index + 1, len(PHASES), PHASES[index + 1] if index + 1 < len(PHASES) else "done")
        if index + 1 < len(PHASES):
            stage.enter_context(ctx.stage(PHASES[index + 1]))

    outcome = compute_adl(request, _labelled(ctx, "compute"))
    run = load_run(outcome.run, request=request)  # the models the user named now, whatever the stored names say
    phase(0)
    choice = choose_layer(run, requested_layer)  # a bad layer is refused before any readout runs
    layer = choice.layer
    positions = options.positions if options.positions is not None else list(range(run.mean_diff.shape[1]))
    lens = {source: lens_grid(run, source) for source in ("diff", "base", "ft")}
    phase(1)
    sig = significance(request, run, choice, options.null, _labelled(ctx, "null"), null_profile_of)
    phase(2)
    steering_settings = protocol.final_samples(steering_samples, options.n_prompts, calibration.sample_temperature)
    env = RunEnvironment(run, layer, positions, steering_settings, calibration, judge=judge)
    scope = env.patchscope_grid(layer, positions) if patchscope else None
    phase(3)
    steering: dict[str, Any] = {}
    if options.steer and _steerable(run, layer, positions):
        steering = _steering(env, layer, ctx, phase)
    else:
        phase(4)
        phase(5)
    known = known_finetune(request.ft_spec, options.description)
    paper = _paper(run, layer, positions, scope, judge, request, options) \
        if protocol.name == "paper" and scope is not None else None
    relevance = relevance_cells(run, lens, scope, known, options.top_k, judge) if known and scope and not paper \
        else None
    similarity = _similarity(steering, known) if known and steering else None
    if known and (table := table_of(sig)) is not None:
        sig = with_evidence(sig, _relevance_test(table, choice, known, relevance, lens, options.top_k, judge),
                            _gain_test(table, choice, known, similarity, env, positions) if options.null_steer
                            else None)
    hypothesis = keyword_hypothesis(env) if steering else None
    # the workbench opens at once, with the calibration just stored (a summary kept before it lacks that)
    memo.prefill(methods.ADL_SUMMARY, {"run": run.run_id}, lambda: run_summary(run), renew=bool(steering))
    phase(6)
    report = {
        "run": run.run_id, "protocol": protocol.name, "base": run.meta["base_label"], "ft": run.meta["ft_label"],
        "corpus": run.meta["corpus_label"], "n": run.meta["n_texts"], "k": run.meta["k"],
        "n_layers": run.meta["n_layers"], "layer": layer, "layer_choice": choice.to_json(), "significance": sig,
        "positions": positions, "cached": outcome.cached,
        "description": known.description if known else None,
        "lens_heads": {source: grid.meta["head"] for source, grid in lens.items()},
        "layers": _layers(run, lens["diff"], scope, layer, positions, relevance, options.top_k),
        "steering": steering, "steering_similarity": similarity,
        "relevance_summary": relevance_summary(relevance) if relevance else None,
        "hypothesis": hypothesis, "headline": headline(sig, hypothesis), "judges": judge.labels(),
        "timings": timings,
    } | ({"paper": paper} if paper is not None else {})
    if not steering:  # no steered text: the keywords the readouts alone recur on (as the board counts them)
        report["hypothesis"] = keyword_hypothesis(RecordedEnvironment(recorded_from_report(report)))
        report["headline"] = headline(sig, report["hypothesis"])
    return report


def _relevance_test(table: NullTable, choice: LayerChoice, known: KnownFinetune, relevance: Cells | None,
                    lens: dict[str, Grid], top_k: int, judge: Judge) -> dict[str, Any] | None:
    """The report layer's diff-lens relevance against the null adapters', graded by the same judge."""
    observed = observed_relevance(relevance, choice.layer) if relevance else None
    if observed is None:
        return None
    frequent = sorted(frequent_tokens(lens["base"].as_top(), top_k=top_k))
    return relevance_null(table, choice, known, top_k, judge, frequent, observed)


def _gain_test(table: NullTable, choice: LayerChoice, known: KnownFinetune, similarity: dict[str, Any] | None,
               env: RunEnvironment, positions: list[int]) -> dict[str, Any] | None:
    """The steering gain against the null adapters' (asked for with `null_steer`, and only when the report steered:
    it costs N calibrations, hours on a CPU)."""
    if similarity is None:
        return None

    def gain_of(null_run: AdlRun, layer: int) -> float | None:
        if not _steerable(null_run, layer, positions):
            return None
        null_env = replace(env, run=null_run, layer=layer)
        steered = _steering(null_env, layer, JobContext(), lambda _: None)
        gain = _similarity(steered, known) if steered else None
        return gain["gain"] if gain else None

    return gain_null(table, choice, gain_of, similarity["gain"])


def _paper(run: AdlRun, layer: int, positions: list[int], scope: Grid, judge: Judge, request: AdlRequest,
           options: TriageSettings) -> dict[str, Any]:
    """What `--protocol paper` adds, as the reference computes it: Patchscope of the mean base and finetuned
    activations beside the difference's, and token relevance of all three (logit lens and Patchscope) against
    the finetune's description and the baseline organisms' (None when nothing describes the finetune)."""
    scopes = {"difference": scope, **{v: paper_patchscope(run, layer, positions, judge, v) for v in ("base", "ft")}}
    own = finetune_organism(request.ft_spec, options.description)
    return {"patchscope": {variant: [_best_tokens(grid, i, options.top_k) for i in range(len(positions))]
                           for variant, grid in scopes.items()},
            "relevance": paper_relevance(run, layer, positions, scopes, own, judge) if own else None}


def _best_tokens(grid: Grid, index: int, top_k: int) -> dict[str, Any]:
    """One Patchscope position: the chosen scale, the grader's selected tokens and the tokens at that scale."""
    cell = patchscope_json(grid, index, top_k)
    best: list[Any] = next((s["tokens"] for s in cell["scales"] if s["scale"] == cell["best_scale"]), [])
    return {k: cell[k] for k in ("pos", "best_scale", "selected", "chosen_by", "judge")} | {"tokens": best}


def _labelled(ctx: JobContext, stage: str) -> JobContext:
    """A context whose progress messages read "stage: …" inside the triage's own progress."""
    return JobContext(emit=lambda e: ctx.emit({**e, "message": f"{stage}: {e['message']}"}),
                      cancel_event=ctx.cancel_event)


def _steerable(run: AdlRun, layer: int, positions: list[int]) -> bool:
    """A zero mean diff (an identical pair) has no direction to steer along: its report has no steering."""
    return bool((run.mean_diff[run.layer_index(layer), positions].norm(dim=-1) > 0).all())


def _steering(env: RunEnvironment, layer: int, ctx: JobContext, phase: Any) -> dict[str, Any]:
    strengths = env.calibrated(layer)
    found = {c["pos"]: c for c in env.calibration_cells(layer)}
    phase(4)
    table = env.steering_table(layer, on_partial=lambda p: ctx.partial({"stage": "steering", **p}))
    phase(5)
    return {str(pos): {"strength": strength, "coherence": found[pos]["coherence"],
                       "ungraded": found[pos].get("ungraded", 0),
                       "prompts": [{"prompt": s["prompt"], "steered": s["steered"], "unsteered": s["unsteered"]}
                                   for s in table.get(pos, [])]}
            for pos, strength in strengths.items()}


def _layers(run: AdlRun, lens: Grid, scope: Grid | None, layer: int, positions: list[int],
            relevance: dict[tuple[int, int], dict[str, Any]] | None, top_k: int) -> dict[str, Any]:
    diff_norm = run.mean_diff.norm(dim=-1)
    rel_norm = diff_norm / run.base_norm.clamp_min(1e-12)
    out: dict[str, Any] = {}
    for row, lay in enumerate(run.layers.tolist()):
        cells = {}
        for pos in range(run.mean_diff.shape[1]):
            cell: dict[str, Any] = {"norm": round(float(diff_norm[row, pos]), 4),
                                    "rel_norm": round(float(rel_norm[row, pos]), 4),
                                    "logit_lens": lens.pairs(row, pos, k=top_k), "patchscope": None,
                                    "relevance": relevance.get((lay, pos)) if relevance else None}
            if lay == layer and pos in positions and scope is not None:
                cell["patchscope"] = patchscope_json(scope, positions.index(pos), top_k)
            cells[str(pos)] = cell
        out[str(lay)] = cells
    return out


def _similarity(steering: dict[str, Any], known: KnownFinetune) -> dict[str, Any] | None:
    """Embedding similarity of steered and unsteered texts to the finetuning texts, cached by those texts (a
    cached report then embeds nothing)."""
    steered = [p["steered"] for cell in steering.values() for p in cell["prompts"]]
    unsteered = [p["unsteered"] for cell in steering.values() for p in cell["prompts"]]
    if not steered or not known.training_texts:
        return None
    inputs = {"steered": json_sha256(steered), "unsteered": json_sha256(unsteered),
              "texts": json_sha256(known.training_texts)}
    if (hit := results.lookup("similarity", inputs)) is not None:
        return hit.meta["similarity"]
    sim = steering_similarity(steered, unsteered, known.training_texts)
    out = {"steered": round(sim.steered, 4), "unsteered": round(sim.unsteered, 4), "gain": round(sim.gain, 4)}
    results.save("similarity", inputs, {"gain": np.asarray([sim.gain], np.float32)}, {"similarity": out})
    return out

