"""Running a board: every pair triaged in load-minimising order, finished pairs skipped, a failing pair
recorded with its error while the rest go on, each outcome stored as soon as it is known. Adapters of one
base are computed together first (one base pass, mixed-adapter batches); `devices` spreads base groups over
worker processes, `ray` over a Ray cluster."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from engine.adl.adapter_group import precompute_adapters
from engine.adl.request import AdlRequest, request_for
from engine.errors import JobCancelled, UserError
from engine.jobs import JobContext
from engine.judges.judge_config import resolve_judge
from engine.protocol.methods import TriagePair
from engine.results.significance import board_significance
from engine.triage import state
from engine.triage.devices import on_devices, parse_devices
from engine.triage.hypothesis import configured_llm, hypothesis, one_line
from engine.triage.order import Planned, count_loads, plan
from engine.triage.pair_triage import TriageOptions, options_for, triage
from engine.triage.pairs import PairEntry
from engine.triage.ray_board import on_ray
from engine.triage.score import README, trace_strength
from store.errors import ActionableError

REPORT_KEYS = ("layer", "positions", "top_k", "steer", "n_prompts", "max_strength")
# Settings that enter a pair's key only when not their default, so pairs finished before they existed still hit.
JUDGING_DEFAULTS = {"judge": ("offline",), "protocol": (None, "default")}
NO_DIFFERENCE = {"text": "No difference: the finetuned model's activations equal the base model's on this corpus.",
                 "source": "zero mean difference"}


def run_board(entries: list[PairEntry], settings: dict[str, Any], ctx: JobContext, *, name: str = "pairs",
              source: str = "", reports: bool = False) -> dict[str, Any]:
    """Triage every pair; returns `{"board", "pairs" (sorted by score), "plan", "skipped", "score_definition"}`."""
    llm = configured_llm(settings.get("llm"))
    settings = {**settings, "judge": resolve_judge(settings.get("judge")).identity}  # refused here, not per pair
    order = plan(entries, bool(settings.get("trust_remote_code")))
    bid = state.board_id(source or name, [e.name for e in entries])
    keys: list[dict[str, str]] = []
    state.save_board(bid, name, source, keys, settings, "running")
    outcomes = []
    devices = parse_devices(settings.get("devices"))
    if settings.get("ray"):
        if devices:
            raise UserError("--ray and --devices both spread the board", "pass one of them")
        lanes = on_ray(order, settings, settings["ray"], reports, ctx, triage_group, _failed,
                       lambda item: _needs_work(item.entry, settings, llm),
                       lambda item: _one(item.entry, settings, llm, JobContext(), reports))
    elif devices:
        lanes = on_devices(order, settings, devices, reports, ctx, triage_group, _failed)
    else:
        lanes = _serial(order, settings, llm, ctx, reports)
    for outcome in lanes:
        keys.append({"name": outcome["name"], "key": outcome.pop("key")})
        state.save_board(bid, name, source, keys, settings, "running")
        ctx.partial({"stage": "board", "pair": {k: v for k, v in outcome.items() if k != "report"}})
        outcomes.append(outcome)
    state.save_board(bid, name, source, keys, settings, "done")
    ctx.progress(len(order), len(order), "done")
    return {"board": bid, "name": name, "source": source, "pairs": state.sort_pairs(outcomes),
            "plan": {"order": [p.entry.name for p in order], "model_loads": count_loads(order)},
            "skipped": sum(1 for o in outcomes if o["skipped"]), "score_definition": README}


def _serial(order: list[Planned], settings: dict[str, Any], llm: Any, ctx: JobContext,
            reports: bool) -> Iterator[dict[str, Any]]:
    """The pairs one after the other in this process, adapters of one base first computed together."""
    _mixed_adapter_runs(order, settings, ctx)
    for index, item in enumerate(order):
        ctx.progress(index, len(order), f"{item.entry.name} ({index + 1}/{len(order)})")
        yield _one(item.entry, settings, llm, _pair_context(ctx, item.entry.name, index, len(order)), reports)


def triage_group(entries: list[dict[str, Any]], settings: dict[str, Any], reports: bool) -> list[dict[str, Any]]:
    """A device worker's share: the pairs of one base group, serially (entries as JSON: they cross processes)."""
    order = plan([PairEntry(**e) for e in entries], bool(settings.get("trust_remote_code")))
    return list(_serial(order, settings, configured_llm(settings.get("llm")), JobContext(), reports))


def _failed(entry: PairEntry, exc: Exception) -> dict[str, Any]:
    """The outcome of a pair whose worker died: an error, stored like any failed pair (retried on re-run)."""
    outcome = _blank(entry) | {"error": one_line(f"worker died: {type(exc).__name__}: {exc}"), "seconds": 0.0}
    state.save_pair(outcome["key"], outcome, None, 0.0)
    return outcome


def _blank(entry: PairEntry) -> dict[str, Any]:
    return {**entry.to_json(), "score": None, "trace": None, "hypothesis": None, "hypothesis_source": None,
            "run": None, "corpus": None, "error": None, "skipped": False,
            "key": state.pair_key({"entry": entry.to_json(), "error": "unresolved"})}


def _mixed_adapter_runs(order: list[Planned], settings: dict[str, Any], ctx: JobContext) -> None:
    """The ADL runs of adapters of one base, computed together in mixed-adapter batches before the pairs are
    triaged one by one (which then find them cached). Whatever fails here is left to its pair to report."""
    requests = []
    for item in order:
        with contextlib.suppress(ActionableError):
            requests.append(request_for(TriagePair.from_json(_params(item.entry, settings))))
    try:
        precompute_adapters(requests, ctx)
    except JobCancelled:
        raise
    except Exception as exc:  # the pairs then run one by one and each reports its own error
        ctx.progress(0, len(order), one_line(f"mixed-adapter batches skipped: {type(exc).__name__}: {exc}"))


def _params(entry: PairEntry, settings: dict[str, Any]) -> dict[str, Any]:
    return {**settings, "base": entry.base, "ft": entry.ft, "adapter": entry.adapter,
            "description": entry.description or settings.get("description")}


def _pair_context(ctx: JobContext, name: str, index: int, total: int) -> JobContext:
    """A context whose progress reads `name (i/n): phase` against the board's pair count."""
    def emit(event: dict[str, Any]) -> None:
        if event.get("type") == "progress":
            event = {**event, "done": index, "total": total,
                     "message": f"{name} ({index + 1}/{total}): {event.get('message', '')}"}
        ctx.emit(event)

    return JobContext(emit=emit, cancel_event=ctx.cancel_event, started=ctx.started)


def _prepare(entry: PairEntry, settings: dict[str, Any], llm: Any) -> tuple[AdlRequest, TriageOptions, str]:
    """The pair's request, report options and key (raises a UserError when its specs do not resolve)."""
    params = _params(entry, settings)
    typed = TriagePair.from_json(params)
    request = request_for(typed)
    request.validate()
    key = state.pair_key({
        "base": request.base_spec.identity(), "ft": request.ft_spec.identity(), "corpus": request.corpus,
        "n": request.n, "k": request.k, "seed": request.seed, "layers": request.layers,
        "dtype": request.placement.dtype_name, "device": request.placement.device,
        "report": {key: params.get(key) for key in REPORT_KEYS}, "description": params["description"],
        "llm": llm.label() if llm is not None else None, "null": typed.null}
        | {k: params.get(k) for k, defaults in JUDGING_DEFAULTS.items() if params.get(k) not in defaults})
    return request, options_for(typed), key


def _needs_work(entry: PairEntry, settings: dict[str, Any], llm: Any) -> bool:
    """Whether the pair resolves and has no finished outcome in the store."""
    try:
        return state.finished(_prepare(entry, settings, llm)[2]) is None
    except ActionableError:
        return False


def _one(entry: PairEntry, settings: dict[str, Any], llm: Any, ctx: JobContext, reports: bool) -> dict[str, Any]:
    """One pair's outcome (stored), from the store when it already finished."""
    started = time.monotonic()
    outcome = _blank(entry)
    report = None
    try:
        request, options, outcome["key"] = _prepare(entry, settings, llm)
        if (stored := state.finished(outcome["key"])) is not None:
            return _from_store(outcome, stored, reports)
        with ctx.active():  # steps counted below the triage read "pair (i/n): phase: tokens" on the board
            report = triage(request, options, ctx)
        trace = trace_strength(report) | {"significance": board_significance(report["significance"])}
        line = _headline(report, trace, llm, ctx)
        outcome |= {"score": trace["score"], "trace": trace, "hypothesis": line["text"],
                    "hypothesis_source": line["source"], "run": report["run"], "corpus": report["corpus"]}
    except JobCancelled:
        raise
    except ActionableError as exc:
        outcome["error"] = one_line(str(exc))
    except Exception as exc:  # an unattended board goes on; the pair shows what broke
        outcome["error"] = one_line(f"{type(exc).__name__}: {exc}")
    seconds = round(time.monotonic() - started, 3)
    state.save_pair(outcome["key"], outcome, report, seconds)
    outcome["seconds"] = seconds
    if reports:
        outcome["report"] = report
    return outcome


def _headline(report: dict[str, Any], trace: dict[str, Any], llm: Any, ctx: JobContext) -> dict[str, Any]:
    """The row's hypothesis: none is asked for when the diff is zero or does not clear its null."""
    if trace["significance"]["readable"] is False:
        return {"text": trace["significance"]["statement"], "source": "significance against the null"}
    if trace["peak_rel_norm"] <= 0:
        return NO_DIFFERENCE
    return hypothesis(report, llm, ctx)


def _from_store(outcome: dict[str, Any], stored: dict[str, Any], reports: bool) -> dict[str, Any]:
    outcome |= {name: stored[name] for name in ("score", "trace", "hypothesis", "hypothesis_source", "run")}
    outcome["corpus"] = (stored.get("report") or {}).get("corpus")
    outcome |= {"skipped": True, "seconds": 0.0}
    if reports:
        outcome["report"] = stored["report"]
    return outcome
