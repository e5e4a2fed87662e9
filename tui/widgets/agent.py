"""The agent pane: hypotheses with confidence and cited evidence, tool calls as they happen, answer and grade."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from tui.state import AgentState


def confidence_bar(conf: float | None, width: int = 5) -> Text:
    """`███░░ 62%` — a small bar so confidences compare at a glance."""
    if conf is None:
        return Text("  ?  ", style="dim")
    frac = conf / 100 if conf > 1 else conf
    filled = round(max(0.0, min(1.0, frac)) * width)
    return Text.assemble(("█" * filled, "green"), ("░" * (width - filled), "dim"), f" {frac * 100:3.0f}%")


_STATUS_STYLE = {"confirmed": "green", "rejected": "red", "active": "yellow"}


class AgentPane(Widget):
    """Shows what the agent thinks, what it did, and (when known) its answer and grade."""

    agent: reactive[AgentState] = reactive(AgentState)

    def watch_agent(self) -> None:
        self.refresh(layout=True)

    def render(self) -> RenderableType:
        agent = self.agent
        parts: list[RenderableType] = []
        head = Text.assemble(("agent ", "bold"), (agent.status, "dim"))
        parts.append(head)
        if agent.note:
            parts.append(Text(agent.note, style="yellow" if agent.status in ("unavailable", "failed") else "dim"))
        if agent.keywords:
            parts.append(Text.assemble(("offline keyword hypothesis: ", "bold"), agent.keywords))
        if agent.final:
            parts.append(Text.assemble(("answer: ", "bold"), agent.final))
        if agent.grade:
            parts.append(Text.assemble(("grade: ", "bold"), agent.grade))
        for hyp in agent.hypotheses:
            mark = confidence_bar(hyp.confidence) if hyp.confidence is not None or not hyp.status else Text(
                f"{hyp.status:<9}", style=_STATUS_STYLE.get(hyp.status, "dim"))
            line = mark + Text(" ") + Text(hyp.text)
            parts.append(line)
            for ev in hyp.evidence:
                parts.append(Text(f"        ↳ {ev}", style="dim"))
        if agent.log:
            parts.append(Text("tool calls", style="bold"))
            parts.extend(Text(line, style="dim", no_wrap=True, overflow="ellipsis") for line in agent.log[-12:])
        return Group(*parts)
