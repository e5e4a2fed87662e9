"""Type a text, see where the two models disagree: per-token KL(ft‖base) painted on the text (issue 13).

The screen sends `lens.kl` for the run's pair and paints the answer; a token's background is its KL on the
viridis scale of the heatmap (the value on a token is the divergence of the prediction made after it), and the
most divergent spot shows what each model predicted.
"""

from __future__ import annotations

from typing import Any

from rich.console import RenderableType
from textual import on, work
from textual.app import ComposeResult
from textual.widgets import Footer, Input

from tui.screens.lens_screen import LensScreen
from tui.widgets.lens_views import divergence_view


class DivergenceScreen(LensScreen):
    """An input line and the painted answer."""

    def compose(self) -> ComposeResult:
        yield Input(placeholder="type a text and press Enter: where do the two models disagree?", id="text")
        yield self.answer_pane()
        yield Footer()

    def paint(self, result: dict[str, Any]) -> RenderableType:
        return divergence_view(result)

    @on(Input.Submitted, "#text")
    def submitted(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.divergence(event.value)

    @work(exclusive=True)
    async def divergence(self, text: str) -> None:
        await self.ask("divergence", "lens.kl", {"texts": [text]}, "computing per-token divergence…")
