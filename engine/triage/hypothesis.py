"""The board's one-line hypothesis: the agent's description when an LLM is configured, else the keyword
summary of the report's top tokens and steered text (no LLM, labelled as counted)."""

from __future__ import annotations

from typing import Any

from engine.adl.runs import load_run
from engine.agent.agent_runs import RunSettings, run_one
from engine.agent.budget import Budget
from engine.agent.keywords import keyword_hypothesis
from engine.agent.recorded import RecordedEnvironment
from engine.agent.run_environment import RunEnvironment
from engine.errors import JobCancelled, UserError
from engine.jobs import JobContext
from engine.llm import make_llm, resolve_config

MAX_CHARS = 240


def configured_llm(llm: str | None) -> Any | None:
    """The LLM config to use: `llm` when given (a bad one is the user's error), else the configured one,
    else None (keywords)."""
    if llm:
        return resolve_config(llm)
    try:
        return resolve_config(None)
    except UserError:
        return None


def one_line(text: str) -> str:
    """The first line, shortened to fit a table cell."""
    line = " ".join(text.strip().split("\n", 1)[0].split())
    return line if len(line) <= MAX_CHARS else line[: MAX_CHARS - 1] + "…"


def keyword_line(report: dict[str, Any]) -> str:
    """The report's keyword summary (computed from its cells when the report has none, e.g. no steering)."""
    if report.get("hypothesis"):
        return one_line(report["hypothesis"]["summary"])
    return one_line(keyword_hypothesis(RecordedEnvironment(recorded_from_report(report)))["summary"])


def recorded_from_report(report: dict[str, Any]) -> dict[str, Any]:
    """A recorded-environment dict (engine/agent/recorded.py) holding what a triage report shows."""
    layer, positions = int(report["layer"]), [int(p) for p in report["positions"]]
    row = report["layers"][str(layer)]
    lens = {str(p): [[str(t), float(q)] for t, q in row[str(p)]["logit_lens"]] for p in positions}
    scope = {}
    for p in positions:
        if cell := row[str(p)].get("patchscope"):
            best = next(s for s in cell["scales"] if s["scale"] == cell["best_scale"])
            scope[str(p)] = {"tokens": [[str(t), float(q)] for t, q in best["tokens"]], "selected": cell["selected"]}
    steering = {p: {"strength": cell["strength"], "samples": [
        {"prompt": s["prompt"], "steered": [s["steered"]], "unsteered": [s["unsteered"]]} for s in cell["prompts"]]}
        for p, cell in (report.get("steering") or {}).items() if cell["prompts"]}
    return {"n_layers": int(report["n_layers"]), "layer": layer, "positions": positions,
            "logit_lens": {str(layer): lens}, "patchscope": {str(layer): scope}, "steering": {str(layer): steering}}


def agent_line(run: str, layer: int, config: Any, ctx: JobContext) -> str:
    """The agent's final description of a cached run read at the report's `layer`, in one line."""
    adl = load_run(run)
    env = RunEnvironment(adl, layer, list(range(min(5, adl.mean_diff.shape[1]))))
    summary = run_one(env, make_llm(config), "adl", RunSettings(budget=Budget()),
                      check_cancelled=ctx.check_cancelled, header={"adl_run": run})
    return one_line(summary["result"]["description"])


def hypothesis(report: dict[str, Any], config: Any | None, ctx: JobContext) -> dict[str, str]:
    """`{"text", "source"}`: the agent's line when `config` is set (keywords if the agent fails)."""
    if config is not None:
        try:
            line = agent_line(report["run"], int(report["layer"]), config, ctx)
            return {"text": line, "source": f"agent ({config.label()})"}
        except JobCancelled:
            raise
        except Exception as exc:  # the agent's failure must not lose the pair: fall back to keywords
            return {"text": keyword_line(report), "source": f"keywords (agent failed: {one_line(str(exc))[:120]})"}
    return {"text": keyword_line(report), "source": "keywords"}
