"""Type a text, see where the two models disagree: per-token KL(ft‖base) painted on the text (issue 13).

The screen sends `lens.kl` for the run's pair through the app's `EngineLink` in a worker and paints the
answer; a token's background is its KL on the viridis scale of the heatmap (the value on a token is the
divergence of the prediction made after it), and the most divergent spot shows what each model predicted.
"""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Input, Static

from tui.link import EngineLink
from tui.widgets.lens_views import divergence_view


class DivergenceScreen(Screen[None]):
    """An input line and the painted answer; Escape goes back to the workbench."""

    BINDINGS = [Binding("escape", "app.pop_screen", "Back")]

    def __init__(self, run: str, link: EngineLink) -> None:
        super().__init__()
        self.run = run
        self.link = link

    def compose(self) -> ComposeResult:
        yield Input(placeholder="type a text and press Enter: where do the two models disagree?", id="text")
        with VerticalScroll():
            yield Static("", id="painted")
        yield Footer()

    @on(Input.Submitted, "#text")
    def submitted(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.query_one("#painted", Static).update(Text("computing per-token divergence…", style="dim"))
            self.divergence(event.value)

    @work(exclusive=True)
    async def divergence(self, text: str) -> None:
        result = await self.link.job("divergence", "lens.kl", {"run": self.run, "texts": [text]})
        if result is not None:
            self.query_one("#painted", Static).update(divergence_view(result))
