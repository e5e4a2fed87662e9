"""`difflens agent RUN`: the interpretability agent (or its baseline) on a cached run."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.panel import Panel

from tui.cli.engine_call import call_engine, target_from
from tui.cli.options import Engine, Json, Remote
from tui.cli.output import emit_json, err, out


def _show(event: dict[str, Any]) -> None:
    inner = event.get("event") or {}
    kind = inner.get("type")
    if kind == "tool_call":
        err.print(f"[cyan]→ {inner.get('name')}[/] {str(inner.get('arguments'))[:160]}", highlight=False)
    elif kind == "hypothesis":
        err.print(f"[yellow]hypothesis[/] {inner.get('hypothesis')} ({inner.get('confidence')})", highlight=False)


def agent(run: str, llm: Annotated[str | None, typer.Option("--llm", help="openai:MODEL, anthropic:MODEL, "
                                                             "local:SPEC (default from DIFFLENS_LLM_*)")] = None,
          budget: Annotated[int, typer.Option("--budget", help="Model interactions allowed.")] = 5,
          baseline: Annotated[bool, typer.Option("--baseline", help="Blackbox agent without ADL.")] = False,
          grade: Annotated[bool, typer.Option("--grade", help="Grade against the known organism.")] = False,
          repeat: Annotated[int, typer.Option("--repeat")] = 1,
          description: Annotated[str | None, typer.Option("--description", help="Truth for grading.")] = None,
          organism_type: Annotated[str | None, typer.Option("--type", help="SDF, EM, Taboo, …")] = None,
          keywords: Annotated[bool, typer.Option("--keywords", help="Offline keyword hypothesis only.")] = False,
          json: Json = False, remote: Remote = None, engine: Engine = None) -> None:
    """Let an LLM agent form and test hypotheses about the finetune from the difference."""
    target = target_from(remote, engine)
    if keywords:
        result = call_engine("agent.keywords", {"run": run}, title="keywords", target=target)
        emit_json(result) if json else out.print(Panel(result["summary"], title=result["label"]))
        return
    params = {"run": run, "llm": llm, "budget": budget, "baseline": baseline, "grade": grade, "repeat": repeat,
              "organism_description": description, "organism_type": organism_type}
    result = call_engine("agent.run", params, title="agent", target=target, on_event=_show)
    if json:
        emit_json(result)
        return
    for summary in result.get("runs", []):
        grade_text = f"  grade {summary['grade']}" if summary.get("grade") is not None else ""
        out.print(Panel(str(summary.get("description", "")), title=f"{summary.get('mode', 'adl')}{grade_text}"))
    if result.get("stats"):
        out.print(result["stats"])
