"""Agent ops: `agent.run` (the interpretability agent, graded and compared on request) and
`agent.keywords` (the offline keyword hypothesis).

`agent.run` params:
  environment     recorded-environment dict (see engine/agent/recorded.py), or
  run             ADL run id (served once `make_environment` knows cached runs)
  llm             openai:MODEL | anthropic:MODEL | local:SPEC (default: DIFFLENS_LLM_MODEL / config file)
  protocol        default | paper (engine/agent/protocols.py): ask_model length and temperature, budgets,
                  grader repeats; `paper` allows budget 0, 5 or 50 and fixes the LLM budget
  budget          model interactions (protocol default 5); llm_calls; token_budget (default protocol only)
  lenses          true → the lenses (divergence, mining, causal check, amplification) as budgeted tools, for
                  the ADL agent and the baseline alike; needs a run (a recorded environment has no models)
  baseline        true → the blackbox agent (plain samples + ask_model only)
  compare         true → ADL and baseline agents under the same protocol, budget and tools, all graded;
                  `repeat` R agents per side (default 1)
  grade           true → score the description 1–5 with the organism registry's rubric (the protocol's
                  number of grader calls, median); a run of a known organism (demo, demo-overfit, a
                  registry or locally trained organism) is graded against what difflens knows of it, else
                  organism_description + organism_type (any of the ten rubric types) are needed
  grader_llm      LLM for grading (default: the agent's)
  tool_calling    auto | native | text;  stream (default true);  temperature;  max_tokens (per reply);
                  llm_timeout (seconds per request; default DIFFLENS_LLM_TIMEOUT, the config's timeout_s, 120)
Every transcript event is streamed as `partial {"run", "mode", "event"}` and saved under
`$DIFFLENS_HOME/agent/`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from engine.agent.agent_runs import RunSettings, compare, run_one
from engine.agent.environment import AgentEnvironment
from engine.agent.grader import rubric_for
from engine.agent.keywords import keyword_hypothesis
from engine.agent.lens_tools import lens_tools
from engine.agent.organism_truth import known_truth
from engine.agent.protocols import protocol_named
from engine.agent.recorded import RecordedEnvironment
from engine.agent.run_environment import RunEnvironment
from engine.agent.tools import Mode, Tool
from engine.errors import UserError
from engine.jobs import JobContext
from engine.judges.judge_config import resolve_judge
from engine.lenses.pair_request import PairRequest
from engine.llm import LLMConfig, make_llm, resolve_config
from engine.llm.config import NoLLMConfigured
from engine.ops import op
from engine.ops.adl_ops import run_of
from engine.organisms.registry import ORGANISM_TYPES
from engine.protocol import methods
from engine.protocol.methods import AgentKeywords, AgentRun, EvidenceParams
from engine.results.layer_choice import report_layer

MAX_REPEAT = 100


def make_environment(params: EvidenceParams) -> AgentEnvironment:
    """The environment an agent works in: a cached ADL run (`run`, readouts filled on demand) or a
    recorded-environment dict (`environment`, for replay and tests)."""
    environment = params.environment
    if environment is not None:
        if not isinstance(environment, dict):
            raise UserError("parameter 'environment' must be a JSON object",
                            "pass the recorded-environment dict described in engine/agent/recorded.py")
        return RecordedEnvironment(environment)
    if params.run is not None:
        adl = run_of(params.run, params.trust_remote_code)
        positions = list(range(min(5, adl.mean_diff.shape[1])))
        return RunEnvironment(adl, report_layer(adl, params.layer), positions,
                              protocol=protocol_named(params.protocol), judge=resolve_judge(params.judge))
    raise UserError("no evidence for the agent", "pass run=<ADL run id> or environment=<recorded environment dict>")


def _truth(params: AgentRun, graded: bool) -> tuple[str | None, str | None]:
    """The organism's description and type for grading: what the caller passed, else what difflens knows of
    the run's finetune; a grade that has neither is refused naming the flags."""
    description, kind = params.organism_description, params.organism_type
    if not graded or (description and kind):
        return description, kind
    if params.run is not None:
        request = run_of(params.run, params.trust_remote_code).request
        known = known_truth(request.ft, request.adapter)
        if known is not None:
            return description or known.description, kind or known.organism_type
    missing = " and ".join(flag for flag, value in (("--description", description), ("--type", kind)) if not value)
    raise UserError("grading needs the organism's true description and type, and difflens does not know this "
                    "finetune", f"pass {missing} (type one of {', '.join(ORGANISM_TYPES)})")


def _settings(params: AgentRun, graded: bool) -> RunSettings:
    """Everything about a run but its lenses (which need the environment), checked before any model loads."""
    protocol = protocol_named(params.protocol)
    budget = protocol.budget(params.budget, params.llm_calls, params.token_budget)
    organism, organism_type = _truth(params, graded)
    return RunSettings(budget=budget, protocol=protocol, tool_calling=params.tool_calling,
                       stream=params.stream, organism=organism, organism_type=organism_type)


def _lenses(params: AgentRun, env: AgentEnvironment) -> tuple[Tool, ...]:
    """The lens tools when asked for (`lenses`); the same tuple goes to the ADL agent and the baseline."""
    if not params.lenses:
        return ()
    tools = tuple(lens_tools_for(env))
    if not tools:
        raise UserError("the lenses run the models, and a recorded environment has none", "drop --lenses")
    return tools


def lens_tools_for(env: AgentEnvironment) -> list[Tool]:
    """The lenses (per-token divergence, diff mining, adapter amplification) as budgeted tools, when the
    environment is a live pair; a recorded environment has no models to run them on."""
    if not isinstance(env, RunEnvironment):
        return []
    return lens_tools(PairRequest.of_run(env.run.request), env.run)


@dataclass(frozen=True)
class Checked:
    """What `agent.run` reads from its params before it needs the run or a model."""

    settings: RunSettings
    comparing: bool
    graded: bool
    repeat: int
    config: LLMConfig


def _checked(params: AgentRun) -> Checked:
    """Everything `agent.run` reads that needs neither the run nor a model, the LLM included."""
    comparing = params.compare
    graded = params.grade or comparing
    settings = _settings(params, graded)
    repeat = params.repeat
    if not 1 <= repeat <= MAX_REPEAT:
        raise UserError(f"repeat must be between 1 and {MAX_REPEAT}", "pass a smaller --repeat")
    if repeat > 1 and not comparing:
        raise UserError("--repeat is the number of agents per side of --compare", "add --compare")
    if comparing and params.baseline:
        raise UserError("--compare already runs the baseline beside the ADL agent", "drop --baseline")
    if graded:
        rubric_for(settings.organism_type or "")
    replies = settings.protocol.agent_llm  # the protocol's agent reply length and temperature, unless given
    temperature = params.temperature if params.temperature is not None else replies.temperature if replies else None
    max_tokens = params.max_tokens if params.max_tokens is not None else replies.max_new_tokens if replies else None
    try:
        config = resolve_config(params.llm, temperature=temperature, max_tokens=max_tokens,
                                timeout_s=params.llm_timeout)
    except NoLLMConfigured as exc:
        if params.run is None:
            raise
        raise UserError(exc.problem, f"pass --llm openai:MODEL, anthropic:MODEL or local:SPEC, or set "
                                     f"DIFFLENS_LLM_MODEL; offline now: `difflens agent {params.run} --keywords` "
                                     f"(the keyword hypothesis) or `difflens tokens {params.run}`") from None
    return Checked(settings, comparing, graded, repeat, config)


def check_agent_run(params: AgentRun) -> None:
    """Refuse at submission what can never run (no LLM above all), instead of after waiting in the queue."""
    _checked(params)


@op(methods.AGENT_RUN, check=check_agent_run)
def agent_run(params: AgentRun, ctx: JobContext) -> dict[str, Any]:
    """Every transcript event is streamed as a partial and saved under the store's agent folder."""
    checked = _checked(params)
    env = make_environment(params)
    settings = replace(checked.settings, extra_tools=_lenses(params, env))
    llm = make_llm(checked.config)
    grader_spec = params.grader_llm
    grader = ((make_llm(resolve_config(grader_spec, timeout_s=params.llm_timeout)) if grader_spec else llm)
              if checked.graded else None)
    header = ({"adl_run": env.run.run_id} if isinstance(env, RunEnvironment)
              else {"environment": params.environment})
    calls = [0]
    # an agent that ends early ends the count
    most = settings.budget.llm_calls * (2 * checked.repeat if checked.comparing else 1)

    def sink_for(mode: Mode, index: int) -> Any:
        def forward(event: dict[str, Any]) -> None:
            ctx.partial({"run": index, "mode": mode, "event": event})
            if event["type"] == "llm_call":
                calls[0] += 1
                ctx.progress(calls[0], most, f"{mode} agent {index + 1}: LLM calls of the budget")
        return forward

    if checked.comparing:
        assert grader is not None
        out = compare(env, llm, grader, settings, checked.repeat, on_event_for=sink_for,
                      check_cancelled=ctx.check_cancelled, header=header)
        return {"runs": [r for rs in out["run_summaries"].values() for r in rs], "protocol": out["protocol"],
                "adl": out["adl"], "baseline": out["baseline"], "compare_path": out["path"]}
    mode: Mode = "baseline" if params.baseline else "adl"
    summary = run_one(env, llm, mode, settings, grader=grader, on_event=sink_for(mode, 0),
                      check_cancelled=ctx.check_cancelled, header=header)
    return {"runs": [summary], "protocol": settings.protocol.name, "compare_path": None}


@op(methods.AGENT_KEYWORDS)
def agent_keywords(params: AgentKeywords, ctx: JobContext) -> dict[str, Any]:
    """The `top` keywords of the evidence, grouped into a one-line hypothesis."""
    top = params.top
    if not 1 <= top <= 100:
        raise UserError("top must be between 1 and 100", "pass a smaller --top")
    return keyword_hypothesis(make_environment(params), top=top)
