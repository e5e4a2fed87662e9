"""Diff mining over a corpus: the tokens the finetune pushes up most often, grouped into topics (issue 13).

Type a corpus source (`generic:`, `recipe:NAME`, a file, `hf:NAME`) and a text count; Enter sends
`lens.mine` for the run's pair in a worker and the table shows each token's count, share of positions, mean
log-prob lift and the context it was pushed up most after; topics group the non-trivial tokens.
"""

from __future__ import annotations

from typing import Any

from rich.console import Group
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Footer, Input, Static

from tui.link import EngineLink
from tui.widgets.lens_views import mining_table, topics_view

DEFAULT_CORPUS = "generic:"
DEFAULT_TEXTS = 40


class MiningScreen(Screen[None]):
    """A corpus line, a text count, and the mined tokens; Escape goes back to the workbench."""

    DEFAULT_CSS = """
    MiningScreen Horizontal { height: auto; }
    MiningScreen #corpus { width: 1fr; }
    MiningScreen #n { width: 12; }
    """
    BINDINGS = [Binding("escape", "app.pop_screen", "Back")]
    result: reactive[dict[str, Any] | None] = reactive(None)

    def __init__(self, run: str, link: EngineLink) -> None:
        super().__init__()
        self.run = run
        self.link = link

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield Input(DEFAULT_CORPUS, placeholder="corpus: generic:, recipe:NAME, a file or hf:NAME; Enter mines",
                        id="corpus")
            yield Input(str(DEFAULT_TEXTS), placeholder="texts", type="integer", id="n")
        with VerticalScroll():
            yield Static("Enter mines the corpus: which tokens does the finetune push up most often?", id="mined")
        yield Footer()

    def watch_result(self, result: dict[str, Any] | None) -> None:
        if result is not None:
            self.query_one("#mined", Static).update(Group(mining_table(result), topics_view(result)))

    @on(Input.Submitted)
    def submitted(self) -> None:
        corpus = self.query_one("#corpus", Input).value.strip() or DEFAULT_CORPUS
        n = self.query_one("#n", Input).value.strip()
        self.mine(corpus, int(n) if n.isdigit() and int(n) > 0 else DEFAULT_TEXTS)

    @work(exclusive=True)
    async def mine(self, corpus: str, n: int) -> None:
        painted = self.query_one("#mined", Static)
        painted.update(f"mining {n} texts of {corpus}…")
        result = await self.link.job("diff mining", "lens.mine",
                                     {"run": self.run, "corpus": corpus, "n": n, "topics": True})
        if result is None:
            painted.update("diff mining failed (the notification says why)")
        else:
            self.result = result
