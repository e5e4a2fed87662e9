"""Running a board: every pair triaged in load-minimising order, finished pairs skipped, a failing pair
recorded with its error while the rest go on, each outcome stored as soon as it is known. Adapters of one
base are computed together first (one base pass, mixed-adapter batches); `devices` spreads base groups over
worker processes, `ray` over a Ray cluster."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from engine.adl.adapter_group import precompute_adapters
from engine.adl.request import request_for
from engine.errors import JobCancelled, UserError
from engine.jobs import JobContext
from engine.judges.judge_config import resolve_judge
from engine.protocol.methods import BoardOptions, TriageSettings
from engine.results.significance import board_significance
from engine.triage import state
from engine.triage.devices import Workers, on_devices, parse_devices
from engine.triage.hypothesis import configured_llm, hypothesis, one_line
from engine.triage.order import count_loads, plan
from engine.triage.pair_triage import triage
from engine.triage.pairs import PairEntry
from engine.triage.planned import Planned, on_device, plan_pair
from engine.triage.ray_board import on_ray
from engine.triage.score import README, trace_strength
from store.errors import ActionableError

NO_DIFFERENCE = {"text": "No difference: the finetuned model's activations equal the base model's on this corpus.",
                 "source": "zero mean difference"}


def run_board(entries: list[PairEntry], settings: TriageSettings, ctx: JobContext, *,
              options: BoardOptions | None = None, name: str = "pairs", source: str = "",
              reports: bool = False) -> dict[str, Any]:
    """Triage every pair (`settings` the board's, each entry's own over them); returns `{"board", "pairs" (sorted
    by score), "plan", "skipped", "score_definition"}`."""
    options = options or BoardOptions()
    llm = configured_llm(options.llm)
    resolve_judge(settings.judge)  # a bad judge is refused here, not per pair
    label = llm.label() if llm is not None else None
    order = plan([plan_pair(entry, settings, label) for entry in entries])

    def place(item: Planned, device: str) -> Planned:
        return on_device(item, device, label)

    bid = state.board_id(source or name, [e.name for e in entries])
    keys: list[dict[str, str]] = []
    stored_settings = settings.to_json() | options.to_json()
    state.save_board(bid, name, source, keys, stored_settings, "running")
    outcomes = []
    devices = parse_devices(options.devices)
    if options.ray:
        if devices:
            raise UserError("--ray and --devices both spread the board", "pass one of them")
        lanes = on_ray(order, options.ray, Workers(triage_group, options.llm, reports, _failed, place),
                       ctx, lambda item: _one(item, llm, JobContext(), reports))
    elif devices:
        lanes = on_devices(order, devices, Workers(triage_group, options.llm, reports, _failed, place), ctx)
    else:
        lanes = _serial(order, llm, ctx, reports)
    for outcome in lanes:
        keys.append({"name": outcome["name"], "key": outcome.pop("key")})
        state.save_board(bid, name, source, keys, stored_settings, "running")
        ctx.partial({"stage": "board", "pair": {k: v for k, v in outcome.items() if k != "report"}})
        outcomes.append(outcome)
    state.save_board(bid, name, source, keys, stored_settings, "done")
    ctx.progress(len(order), len(order), "done")
    return {"board": bid, "name": name, "source": source, "pairs": state.sort_pairs(outcomes),
            "plan": {"order": [p.name for p in order], "model_loads": count_loads(order)},
            "skipped": sum(1 for o in outcomes if o["skipped"]), "score_definition": README}


def _serial(order: list[Planned], llm: Any, ctx: JobContext, reports: bool) -> Iterator[dict[str, Any]]:
    """The pairs one after the other in this process, adapters of one base first computed together."""
    _mixed_adapter_runs(order, ctx)
    for index, item in enumerate(order):
        ctx.progress(index, len(order), f"{item.name} ({index + 1}/{len(order)})")
        yield _one(item, llm, _pair_context(ctx, item.name, index, len(order)), reports)


def triage_group(planned: list[dict[str, Any]], llm: str | None, reports: bool) -> list[dict[str, Any]]:
    """A device or Ray worker's share: the planned pairs of one base group (as JSON: they cross processes),
    serially."""
    order = [Planned.from_json(item) for item in planned]
    return list(_serial(order, configured_llm(llm), JobContext(), reports))


def _failed(item: Planned, exc: Exception) -> dict[str, Any]:
    """The outcome of a pair whose worker died: an error, stored like any failed pair (retried on re-run)."""
    outcome = _blank(item) | {"error": one_line(f"worker died: {type(exc).__name__}: {exc}"), "seconds": 0.0}
    state.save_pair(outcome["key"], outcome, None, 0.0)
    return outcome


def _blank(item: Planned) -> dict[str, Any]:
    return {**item.row(), "score": None, "trace": None, "hypothesis": None, "hypothesis_source": None,
            "run": None, "corpus": None, "error": item.error, "skipped": False, "key": item.key}


def _mixed_adapter_runs(order: list[Planned], ctx: JobContext) -> None:
    """The ADL runs of adapters of one base, computed together in mixed-adapter batches before the pairs are
    triaged one by one (which then find them cached). Whatever fails here is left to its pair to report."""
    requests = [request_for(item.pair) for item in order if item.error is None]
    try:
        precompute_adapters(requests, ctx)
    except JobCancelled:
        raise
    except Exception as exc:  # the pairs then run one by one and each reports its own error
        ctx.progress(0, len(order), one_line(f"mixed-adapter batches skipped: {type(exc).__name__}: {exc}"))


def _pair_context(ctx: JobContext, name: str, index: int, total: int) -> JobContext:
    """A context whose progress reads `name (i/n): phase` against the board's pair count."""
    def emit(event: dict[str, Any]) -> None:
        if event.get("type") == "progress":
            event = {**event, "done": index, "total": total,
                     "message": f"{name} ({index + 1}/{total}): {event.get('message', '')}"}
        ctx.emit(event)

    return JobContext(emit=emit, cancel_event=ctx.cancel_event, started=ctx.started)


def _one(item: Planned, llm: Any, ctx: JobContext, reports: bool) -> dict[str, Any]:
    """One pair's outcome (stored), from the store when it already finished."""
    started = time.monotonic()
    outcome = _blank(item)
    report = None
    try:
        if item.error is None:
            if (stored := state.finished(item.key)) is not None:
                return _from_store(outcome, stored, reports)
            with ctx.active():  # steps counted below the triage read "pair (i/n): phase: tokens" on the board
                report = triage(request_for(item.pair), item.pair, ctx)
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
