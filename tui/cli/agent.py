"""`difflens agent RUN`: the interpretability agent (or its baseline, or both side by side) on a cached run."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from engine.protocol import methods
from engine.protocol.results import AgentRunResult, AgentRunSummary, AgentUsage, ComparedSide, Grade
from tui.cli.engine_call import call_engine, target_from
from tui.cli.options import Engine, Json, JudgeSpec, Remote
from tui.cli.output import emit_json, err, fail, out
from tui.render.plain_text import plain

SIDES = {"adl": "ADL agent", "baseline": "baseline agent"}
PROTOCOL_HELP = ("default, or paper: the paper's tools, its ask_model length and temperature, budgets 0|5|50, "
                 "3 gradings (median)")


def _show(event: dict[str, Any]) -> None:
    inner = event.get("event") or {}
    kind = inner.get("type")
    if kind == "tool_call":
        err.print(Text.assemble((f"→ {inner.get('name')}", "cyan"), f" {str(inner.get('arguments'))[:160]}"),
                  highlight=False)
    elif kind == "hypothesis":
        err.print(Text.assemble((f"hypothesis {inner.get('id')}", "yellow"),
                                f" {inner.get('hypothesis')} ({inner.get('status')})"), highlight=False)
    elif kind in ("protocol_error", "error", "context_overflow"):
        err.print(Text.assemble((str(kind), "red"), f" {str(inner.get('message'))[:160]}"), highlight=False)


def _score(value: int | float | None) -> str:
    return "ungraded" if value is None else f"{value:g}"


def compare_table(result: AgentRunResult) -> Table:
    """Both agents' grades side by side, with what they were allowed (the same on both sides)."""
    runs = {mode: [r for r in result.runs if r.mode == mode] for mode in SIDES}
    sides = {mode: getattr(result, mode) or ComparedSide() for mode in SIDES}
    table = Table("", *SIDES.values(), title=f"agent comparison, protocol {result.protocol}")
    table.add_row("grade (median)", *(_score(sides[mode].grade) for mode in SIDES))
    table.add_row("grader scores", *(" | ".join(", ".join(_score(s) for s in (r.grade or Grade()).scores)
                                                for r in runs[mode]) for mode in SIDES))
    if any(sides[mode].n > 1 for mode in SIDES):
        table.add_row("mean ± sd", *(f"{_score(sides[m].mean)} ± {_score(sides[m].sd)}" for m in SIDES))
    for label, key in (("model interactions", "model_interactions"), ("LLM calls", "llm_calls")):
        used = {m: ", ".join(str(getattr(_usage(r), key)) for r in runs[m]) for m in SIDES}
        table.add_row(label, *(f"{used[m]} used of {sides[m].budget[key]}" for m in SIDES))
    table.add_row("tested anything", *(_tested(runs[mode]) for mode in SIDES))
    costs: tuple[tuple[str, str | None], ...] = (("LLM time (s)", "llm_s"), ("tool time (s)", "tool_s"),
                                                 ("tokens in / out", None))
    for label, cost_key in costs:
        table.add_row(label, *(", ".join(_cost(r, cost_key) for r in runs[mode]) for mode in SIDES))
    table.add_row("tools", *(", ".join(sides[mode].tools) for mode in SIDES))
    return table


def _usage(run: AgentRunSummary) -> AgentUsage:
    return run.result.usage if run.result is not None else AgentUsage()


def _tested(runs: list[AgentRunSummary]) -> str:
    """`yes`, or `NO: ended without a tool call` for an agent whose answer rests on nothing it tried."""
    return ", ".join("yes" if r.result is not None and r.result.tested else "NO: ended without testing anything"
                     for r in runs)


def _cost(run: AgentRunSummary, key: str | None) -> str:
    usage = _usage(run)
    return f"{usage.tokens_in} / {usage.tokens_out}" if key is None else f"{getattr(usage, key):g}"


def _describe(summary: AgentRunSummary) -> Panel:
    grade = summary.grade
    title = SIDES[summary.mode] + (f"  grade {_score(grade.score)}" if grade else "")
    return Panel(summary.result.description if summary.result is not None else "", title=title)


def agent(run: str, llm: Annotated[str | None, typer.Option("--llm", help="openai:MODEL, anthropic:MODEL, "
                                                             "local:SPEC (default from DIFFLENS_LLM_*)")] = None,
          protocol: Annotated[methods.Protocol, typer.Option("--protocol", help=PROTOCOL_HELP)] = "default",
          budget: Annotated[int | None, typer.Option("--budget", help="Model interactions allowed "
                                                     "(default 5; under --protocol paper 0, 5 or 50).")] = None,
          lenses: Annotated[bool, typer.Option("--lenses", help="Add the lenses as budgeted tools, for the ADL "
                                               "agent and the baseline alike.")] = False,
          baseline: Annotated[bool, typer.Option("--baseline", help="Blackbox agent without ADL.")] = False,
          compare: Annotated[bool, typer.Option("--compare", help="ADL and baseline agents under the same protocol, "
                                                "budget and tools, graded side by side.")] = False,
          grade: Annotated[bool, typer.Option("--grade", help="Grade against the known organism.")] = False,
          repeat: Annotated[int, typer.Option("--repeat", help="Agents per side of --compare.")] = 1,
          description: Annotated[str | None, typer.Option("--description", help="Truth for grading (known "
                                                          "organisms such as the demo need none).")] = None,
          organism_type: Annotated[str | None, typer.Option("--type", help="SDF, EM, Taboo, …")] = None,
          keywords: Annotated[bool, typer.Option("--keywords", help="Offline keyword hypothesis only.")] = False,
          llm_calls: Annotated[int | None, typer.Option("--llm-calls", help="The agent's LLM calls (default "
                                                        "protocol only; default 30).")] = None,
          max_tokens: Annotated[int | None, typer.Option("--max-tokens", help="Tokens per LLM reply "
                                                         "(default: the protocol's, else 2048).")] = None,
          llm_timeout: Annotated[float | None, typer.Option("--llm-timeout", help="Seconds one LLM request may "
                                                            "take (else DIFFLENS_LLM_TIMEOUT, the config's "
                                                            "timeout_s, 120).")] = None,
          judge: JudgeSpec = None,
          json: Json = False, remote: Remote = None, engine: Engine = None) -> None:
    """Let an LLM agent form and test hypotheses about the finetune from the difference."""
    target = target_from(remote, engine)
    if keywords:
        if compare or baseline or lenses:
            fail("--keywords is the offline keyword hypothesis, not an agent — drop --compare, --baseline, --lenses")
        found = call_engine(methods.AGENT_KEYWORDS, methods.AgentKeywords(run=run), title="keywords", target=target)
        emit_json(found) if json else out.print(Panel(found.text, title=plain(found.label)))
        return
    params = methods.AgentRun(run=run, llm=llm, protocol=protocol, budget=budget, lenses=lenses, baseline=baseline,
                              compare=compare, grade=grade, repeat=repeat, organism_description=description,
                              organism_type=organism_type, judge=judge, llm_calls=llm_calls, max_tokens=max_tokens,
                              llm_timeout=llm_timeout)
    result = call_engine(methods.AGENT_RUN, params, title="agent", target=target, on_event=_show)
    if json:
        emit_json(result)
        return
    for summary in result.runs:
        out.print(_describe(summary))
    if compare:
        out.print(compare_table(result))
