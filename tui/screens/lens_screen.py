"""The shape every lens view shares: one `lens.*` op on the workbench run's pair, sent in a worker, and an
answer pane that shows the wait, the painted result or that it failed (the app's notification says why).

A subclass composes its own controls around `answer_pane()` and says how a result paints (`paint`).
"""

from __future__ import annotations

from typing import Generic, TypeVar

from rich.console import RenderableType
from rich.text import Text
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Input, Static

from engine.protocol.methods import Method
from engine.protocol.params import Params
from engine.protocol.results import LensAnswer
from tui.link import EngineLink
from tui.progress_text import event_text

P = TypeVar("P", bound=Params)
A = TypeVar("A", bound=LensAnswer)


class LensScreen(Screen[None], Generic[A]):
    """A lens on the run `run` at `layer` and `pos` (the heatmap cursor's; None: the lens's default), kept as
    `at_layer` (`layer` is Textual's CSS layer) and `at_pos`; Escape goes back. `A`: the lens's answer type."""

    BINDINGS = [Binding("escape", "app.pop_screen", "Back")]
    result: reactive[A | None] = reactive(None)

    def __init__(self, run: str, link: EngineLink, layer: int | None = None, pos: int | None = None) -> None:
        super().__init__()
        self.run = run
        self.link = link
        self.at_layer = layer
        self.at_pos = pos

    @staticmethod
    def answer_pane(hint: str = "") -> VerticalScroll:
        """The scrolling pane the answer is painted into (compose it once)."""
        return VerticalScroll(Static(hint, id="answer"), id="answer-pane")

    def paint(self, result: A) -> RenderableType:
        raise NotImplementedError

    def action_edit(self) -> None:
        """Back into the screen's first input line."""
        self.query(Input).first().focus()

    def watch_result(self, result: A | None) -> None:
        if result is not None:
            self.query_one("#answer", Static).update(self.paint(result))

    async def ask(self, label: str, method: Method[P, A], params: P, waiting: str) -> None:
        """Send `method` (its params on this run) from a `@work` worker; the answer lands in `result`."""
        answer = self.query_one("#answer", Static)
        answer.update(Text(waiting, style="dim"))
        result = await self.link.job(label, method, params,
                                     on_progress=lambda event: answer.update(Text(f"{waiting}\n{event_text(event)}",
                                                                                  style="dim")))
        if result is None:
            answer.update(Text(f"{label} failed (the notification says why)", style="red"))
        else:
            self.result = result
