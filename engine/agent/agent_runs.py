"""Agent runs as stored things: run one agent (optionally graded) and save its transcript, or run R ADL
and R baseline agents under one protocol, budget and tool set and compare their grades. Files go to
`$DIFFLENS_HOME/agent/`, written atomically, saved even when a run fails or is cancelled (a partial
transcript is still a record)."""

from __future__ import annotations

import json
import math
import secrets
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from engine.agent.budget import Budget
from engine.agent.environment import AgentEnvironment
from engine.agent.grader import grade_repeated
from engine.agent.loop import AgentLoop, ProtocolChoice
from engine.agent.protocols import PROTOCOLS, AgentProtocol
from engine.agent.tools import Mode, Tool
from engine.agent.transcript import Event, Transcript
from engine.errors import JobCancelled
from engine.llm.base import ChatLLM
from store import paths
from store.atomic import write_text_atomic

EventSinkFor = Callable[[Mode, int], Callable[[Event], None]]


@dataclass(frozen=True)
class RunSettings:
    budget: Budget
    protocol: AgentProtocol = PROTOCOLS["default"]
    tool_calling: ProtocolChoice = "auto"
    stream: bool = False
    organism: str | None = None
    organism_type: str | None = None
    extra_tools: tuple[Tool, ...] = ()


def agent_dir() -> Path:
    path = paths.home() / "agent"
    path.mkdir(parents=True, exist_ok=True)
    return path


def new_run_id(kind: str) -> str:
    return f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def run_one(env: AgentEnvironment, llm: ChatLLM, mode: Mode, settings: RunSettings, *,
            grader: ChatLLM | None = None, on_event: Callable[[Event], None] | None = None,
            check_cancelled: Callable[[], None] = lambda: None,
            header: dict[str, Any] | None = None) -> dict[str, Any]:
    """One agent run, graded when a grader is given; returns its summary (with the saved file's path)."""
    run_id = new_run_id(f"agent-{mode}")
    path = agent_dir() / f"{run_id}.json"
    transcript = Transcript(on_event, secrets=(*llm.secrets, *(grader.secrets if grader else ())))
    summary: dict[str, Any] = {"id": run_id, "mode": mode, "llm": llm.label,
                               "grader": grader.label if grader else None, "budget": asdict(settings.budget),
                               "protocol": settings.protocol.name, "tool_calling": settings.tool_calling,
                               "tools": None, "organism_type": settings.organism_type,
                               "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "status": "running",
                               "result": None, "grade": None, "path": str(path)}
    try:
        loop = AgentLoop(env, llm, transcript, mode=mode, budget=settings.budget, protocol=settings.tool_calling,
                         stream=settings.stream, check_cancelled=check_cancelled, extra_tools=settings.extra_tools)
        summary["tools"] = list(loop.tools)
        result = loop.run()
        summary["result"] = result.as_dict()
        if grader is not None:
            summary["grade"] = grade_repeated(result.description, settings.organism or "",
                                              settings.organism_type or "", grader,
                                              settings.protocol.grader_repeats, transcript, result.given)
        summary["status"] = "done"
    except JobCancelled:
        summary["status"] = "cancelled"
        transcript.emit("cancelled")
        raise
    except Exception as exc:
        summary["status"] = "error"
        summary["error"] = transcript.redactor.text(str(exc))
        raise
    finally:
        transcript.save(path, {**summary, "organism": settings.organism, **(header or {})})
    return transcript.redactor.obj(summary)


def score_stats(scores: list[float | None]) -> dict[str, Any]:
    """Median (`grade`), mean ± sample sd of the grades that were read (ungraded runs counted apart)."""
    read = [s for s in scores if s is not None]
    mean = sum(read) / len(read) if read else None
    sd = (math.sqrt(sum((s - mean) ** 2 for s in read) / (len(read) - 1)) if mean is not None and len(read) > 1
          else 0.0 if read else None)
    return {"grade": statistics.median(read) if read else None, "grades": scores, "n": len(read),
            "ungraded": len(scores) - len(read), "mean": None if mean is None else round(mean, 3),
            "sd": None if sd is None else round(sd, 3)}


def compare(env: AgentEnvironment, llm: ChatLLM, grader: ChatLLM, settings: RunSettings, repeat: int, *,
            on_event_for: EventSinkFor | None = None, check_cancelled: Callable[[], None] = lambda: None,
            header: dict[str, Any] | None = None) -> dict[str, Any]:
    """R ADL agents and R baseline agents under the same settings, all graded; per mode the grades (each the
    median of the protocol's grader repeats) with their median, mean ± sd, budget and tools, and `untested`:
    how many of its agents ended without testing anything (no tool call but hypothesis_tracking); saved as
    one file."""
    runs: dict[str, list[dict[str, Any]]] = {"adl": [], "baseline": []}
    for mode in ("adl", "baseline"):
        for index in range(repeat):
            runs[mode].append(run_one(env, llm, mode, settings, grader=grader,
                                      on_event=on_event_for(mode, index) if on_event_for else None,
                                      check_cancelled=check_cancelled, header=header))
    sides = {mode: {**score_stats([r["grade"]["score"] for r in rs]), "budget": asdict(settings.budget),
                    "tools": rs[0]["tools"], "runs": [r["id"] for r in rs],
                    "untested": sum(not r["result"]["tested"] for r in rs)} for mode, rs in runs.items()}
    compare_id = new_run_id("agent-compare")
    path = agent_dir() / f"{compare_id}.json"
    document = {"id": compare_id, "llm": llm.label, "grader": grader.label, "protocol": settings.protocol.name,
                "repeat": repeat, "grader_repeats": settings.protocol.grader_repeats,
                "organism_type": settings.organism_type, **sides}
    write_text_atomic(path, json.dumps(document, indent=1))
    return {**document, "path": str(path), "run_summaries": runs}
