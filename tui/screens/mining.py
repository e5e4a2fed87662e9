"""Diff mining over a corpus: the tokens the finetune pushes up most often, grouped into topics (issue 13).

Type a corpus source (`generic:`, `recipe:NAME`, a file, `hf:NAME`) and a text count; Enter sends
`lens.mine` for the run's pair in a worker and the table shows each token's count, share of positions, mean
log-prob lift and the context it was pushed up most after; topics (a non-negative factorisation of the position
× token matrix) group the tokens pushed up in the same contexts.
"""

from __future__ import annotations

from dataclasses import replace

from rich.console import Group, RenderableType
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Footer, Input

from engine.protocol import methods
from engine.protocol.results import MineAnswer
from tui.presets import GENERIC, MINE
from tui.render.lens_views import mining_table, topics_view
from tui.screens.lens_screen import LensScreen

DEFAULT_CORPUS = GENERIC
DEFAULT_TEXTS = MINE.n


class MiningScreen(LensScreen[MineAnswer]):
    """A corpus line, a text count, and the mined tokens; Escape goes back to the workbench."""

    DEFAULT_CSS = """
    MiningScreen Horizontal { height: auto; }
    MiningScreen #corpus { width: 1fr; }
    MiningScreen #n { width: 12; }
    """

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield Input(DEFAULT_CORPUS, placeholder="corpus: generic:, recipe:NAME, a file or hf:NAME; Enter mines",
                        id="corpus")
            yield Input(str(DEFAULT_TEXTS), placeholder="texts", type="integer", id="n")
        yield self.answer_pane("Enter mines the corpus: which tokens does the finetune push up most often?")
        yield Footer()

    def paint(self, result: MineAnswer) -> RenderableType:
        return Group(mining_table(result), topics_view(result))

    @on(Input.Submitted)
    def submitted(self) -> None:
        corpus = self.query_one("#corpus", Input).value.strip() or DEFAULT_CORPUS
        n = self.query_one("#n", Input).value.strip()
        self.mine(corpus, int(n) if n.isdigit() and int(n) > 0 else DEFAULT_TEXTS)

    @work(exclusive=True)
    async def mine(self, corpus: str, n: int) -> None:
        await self.ask("diff mining", methods.LENS_MINE, replace(MINE, run=self.run, corpus=corpus, n=n),
                       f"mining {n} texts of {corpus}…")
