"""Small named messages: how results, progress and failures travel from workers to the panes that show them."""

from __future__ import annotations

from typing import Any

from textual.message import Message

from engine.protocol import results
from engine.protocol.methods import Source
from tui.state import JobView


class EngineConnected(Message, bubble=False):
    """A client is attached (first time or after a reconnect). The app forwards it to each screen after a
    reconnect, so it must not bubble back up."""

    def __init__(self, description: str) -> None:
        super().__init__()
        self.description = description


class EngineLost(Message):
    """The engine went away (process died, socket closed); the reconnect action can bring it back."""

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


class OpFailed(Message):
    """An engine method failed in a way the user can act on; shown as a notification."""

    def __init__(self, method: str, error: str) -> None:
        super().__init__()
        self.method = method
        self.error = error


class StatusReady(Message):
    """An `engine.status` answer."""

    def __init__(self, status: results.EngineStatus) -> None:
        super().__init__()
        self.status = status


class JobChanged(Message):
    """A long job progressed, started or ended (`job` is None when none is running)."""

    def __init__(self, job: JobView | None) -> None:
        super().__init__()
        self.job = job


class Progressed(Message):
    """A job that a pane waits on progressed: `text` says its steps and ETA (`pane`: patch, steer or agent)."""

    def __init__(self, pane: str, text: str) -> None:
        super().__init__()
        self.pane = pane
        self.text = text


class RunsListed(Message):
    """`adl.runs` answered."""

    def __init__(self, runs: list[results.RunListing]) -> None:
        super().__init__()
        self.runs = runs


class SessionsListed(Message):
    """`sessions.list` answered (empty when the engine has no sessions yet)."""

    def __init__(self, sessions: list[dict[str, Any]]) -> None:
        super().__init__()
        self.sessions = sessions


class RunReady(Message):
    """`adl.compute` finished (or found its cache): the run can be opened."""

    def __init__(self, run: str) -> None:
        super().__init__()
        self.run = run


class SummaryReady(Message):
    """`adl.summary` answered: the heatmap can paint."""

    def __init__(self, summary: results.AdlSummary) -> None:
        super().__init__()
        self.summary = summary


class CellSelected(Message):
    """The heatmap cursor moved by (`d_row`, `d_pos`)."""

    def __init__(self, d_row: int, d_pos: int) -> None:
        super().__init__()
        self.d_row = d_row
        self.d_pos = d_pos


class LensReady(Message):
    """A logit lens answer for one cell and source, and whose head read it (base | ft; "" if not said)."""

    def __init__(self, layer: int, pos: int, source: Source, tokens: list[Any], head: str = "") -> None:
        super().__init__()
        self.layer = layer
        self.pos = pos
        self.source = source
        self.tokens = tokens
        self.head = head


class PatchscopeReady(Message):
    """A Patchscope answer for one cell."""

    def __init__(self, layer: int, pos: int, result: results.PatchscopeCell) -> None:
        super().__init__()
        self.layer = layer
        self.pos = pos
        self.result = result


class PromptSelected(Message):
    """The steering prompt cursor moved by `delta`."""

    def __init__(self, delta: int) -> None:
        super().__init__()
        self.delta = delta


class AgentEvent(Message):
    """One streamed agent event."""

    def __init__(self, event: dict[str, Any]) -> None:
        super().__init__()
        self.event = event


class AgentDone(Message):
    """The agent finished (`result`) or could not run (`error`; then `keywords` is the offline `agent.keywords`
    answer, None if that failed too)."""

    def __init__(self, result: results.AgentRunResult | None, error: str = "",
                 keywords: results.Keywords | None = None) -> None:
        super().__init__()
        self.result = result
        self.error = error
        self.keywords = keywords
