"""Agent ops: `agent.run` (the interpretability agent, graded and repeated on request) and
`agent.keywords` (the offline keyword hypothesis).

`agent.run` params:
  environment     recorded-environment dict (see engine/agent/recorded.py), or
  run             ADL run id (served once `make_environment` knows cached runs)
  llm             openai:MODEL | anthropic:MODEL | local:SPEC (default: DIFFLENS_LLM_MODEL / config file)
  budget          model interactions (default 5); llm_calls (30); token_budget (400000)
  baseline        true → the blackbox agent (plain samples + ask_model only)
  grade           true → score the description 1–5 with the organism registry's rubric; needs
                  organism_description + organism_type (sdf|em|taboo|subliminal|domain or SDF, EM, …)
  repeat          R > 1 → R ADL and R baseline agents, graded, mean ± sd per mode
  grader_llm      LLM for grading (default: the agent's)
  protocol        auto | native | text;  stream (default true);  temperature;  max_tokens (per reply)
Every transcript event is streamed as `partial {"run", "mode", "event"}` and saved under
`$DIFFLENS_HOME/agent/`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from engine.agent.budget import Budget
from engine.agent.environment import AgentEnvironment
from engine.agent.grader import rubric_for
from engine.agent.keywords import keyword_hypothesis
from engine.agent.llm import make_llm, resolve_config
from engine.agent.recorded import RecordedEnvironment
from engine.agent.runs import RunSettings, compare, run_one
from engine.agent.tools import Mode, Tool
from engine.errors import UserError
from engine.jobs import JobContext
from engine.ops import op
from engine.ops.adl import run_param
from engine.ops.params import get

MAX_REPEAT = 100


def make_environment(params: dict[str, Any]) -> AgentEnvironment:
    """The environment an agent works in: a cached ADL run (`run`, readouts filled on demand) or a
    recorded-environment dict (`environment`, for replay and tests)."""
    environment = params.get("environment")
    if environment is not None:
        if not isinstance(environment, dict):
            raise UserError("parameter 'environment' must be a JSON object",
                            "pass the recorded-environment dict described in engine/agent/recorded.py")
        return RecordedEnvironment(environment)
    if get(params, "run", str) is not None:
        from engine.analysis.environment import RunEnvironment

        adl = run_param(params)
        positions = list(range(min(5, adl.mean_diff.shape[1])))
        return RunEnvironment(adl, get(params, "layer", int, adl.middle_layer), positions)
    raise UserError("no evidence for the agent", "pass run=<ADL run id> or environment=<recorded environment dict>")


def _settings(params: dict[str, Any]) -> RunSettings:
    protocol = get(params, "protocol", str, "auto")
    if protocol not in ("auto", "native", "text"):
        raise UserError(f"unknown protocol {protocol!r}", "pass protocol auto, native or text")
    budget = Budget(model_interactions=get(params, "budget", int, 5), llm_calls=get(params, "llm_calls", int, 30),
                    tokens=get(params, "token_budget", int, 400_000))
    return RunSettings(budget=budget, protocol=protocol, stream=get(params, "stream", bool, True),  # type: ignore[arg-type]
                       organism=get(params, "organism_description", str),
                       organism_type=get(params, "organism_type", str))


def lens_tools_for(env: AgentEnvironment) -> list[Tool]:
    """The lenses (per-token divergence, diff mining, adapter amplification) as budgeted tools, when the
    environment is a live pair; a recorded environment has no models to run them on."""
    from engine.analysis.environment import RunEnvironment

    if not isinstance(env, RunEnvironment):
        return []
    from engine.lenses.request import PairRequest
    from engine.lenses.tools import lens_tools

    return lens_tools(PairRequest.of_run(env.run.request))


@op("agent.run", long=True)
def agent_run(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Run the interpretability agent on ADL evidence (or the baseline); optionally graded and repeated."""
    env = make_environment(params)
    settings = replace(_settings(params), extra_tools=tuple(lens_tools_for(env)))
    repeat = get(params, "repeat", int, 1)
    if not 1 <= repeat <= MAX_REPEAT:
        raise UserError(f"repeat must be between 1 and {MAX_REPEAT}", "pass a smaller --repeat")
    graded = get(params, "grade", bool, False) or repeat > 1
    if graded:
        if not settings.organism or not settings.organism_type:
            raise UserError("grading needs the organism's true description and type",
                            "pass organism_description and organism_type (sdf, em, taboo, subliminal, domain)")
        rubric_for(settings.organism_type)
    config = resolve_config(get(params, "llm", str), temperature=get(params, "temperature", float),
                            max_tokens=get(params, "max_tokens", int))
    llm = make_llm(config)
    grader_spec = get(params, "grader_llm", str)
    grader = (make_llm(resolve_config(grader_spec)) if grader_spec else llm) if graded else None
    header = {"environment": params["environment"]} if "environment" in params else {"adl_run": params.get("run")}
    calls = [0]

    def sink_for(mode: Mode, index: int) -> Any:
        def forward(event: dict[str, Any]) -> None:
            ctx.partial({"run": index, "mode": mode, "event": event})
            if event["type"] == "llm_call":
                calls[0] += 1
                ctx.progress(calls[0], None, f"{mode} agent {index + 1}: LLM call {event['index']}")
        return forward

    if repeat > 1:
        assert grader is not None
        out = compare(env, llm, grader, settings, repeat, on_event_for=sink_for,
                      check_cancelled=ctx.check_cancelled, header=header)
        return {"runs": [r for rs in out["run_summaries"].values() for r in rs], "stats": out["stats"],
                "compare_path": out["path"]}
    mode: Mode = "baseline" if get(params, "baseline", bool, False) else "adl"
    summary = run_one(env, llm, mode, settings, grader=grader, on_event=sink_for(mode, 0),
                      check_cancelled=ctx.check_cancelled, header=header)
    return {"runs": [summary], "stats": None, "compare_path": None}


@op("agent.keywords")
def agent_keywords(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """The offline keyword hypothesis from the ADL evidence (no LLM; not an agent)."""
    top = get(params, "top", int, 12)
    if not 1 <= top <= 100:
        raise UserError("top must be between 1 and 100", "pass a smaller --top")
    return keyword_hypothesis(make_environment(params), top=top)
