"""PCA of the differences at the heatmap cursor's cell (issue 22).

The per-text differences (ft − base) at the cursor's layer and position over a corpus (the shipped generic text
unless typed), their principal components by explained variance and each one's logit-lens tokens both ways.
Enter runs and moves to the table, where `j`/`k` pick a component and `e` edits the corpus again. Steering takes
a run's mean diff at a cell (the steering op has no way to hand it another vector), so a component is read here,
not steered: the note under the table says so.
"""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.reactive import reactive
from textual.widgets import Footer, Input

from tui.screens.lens_screen import LensScreen
from tui.widgets.lens_views import pca_view

DEFAULT_CORPUS = "generic:"
DEFAULT_TEXTS = 256
NOT_STEERABLE = ("a component is not steerable yet: steering (r in the workbench) takes the run's mean diff at a "
                 "cell, and the steering op accepts no other vector")


class PcaScreen(LensScreen):
    """A corpus line, a text count, the components table; Escape goes back to the workbench."""

    DEFAULT_CSS = """
    PcaScreen Horizontal { height: auto; }
    PcaScreen #corpus { width: 1fr; }
    PcaScreen #n { width: 12; }
    """
    BINDINGS = [Binding("j", "pick(1)", "Next component"), Binding("k", "pick(-1)", "Previous component"),
                Binding("e", "edit", "Edit corpus")]
    AUTO_FOCUS = "#corpus"
    selected: reactive[int] = reactive(0)

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield Input(DEFAULT_CORPUS, placeholder="corpus: generic:, recipe:NAME, a file or hf:NAME; Enter runs",
                        id="corpus")
            yield Input(str(DEFAULT_TEXTS), placeholder="texts", type="integer", id="n")
        yield self.answer_pane("Enter reads the principal components of the per-text differences at this cell")
        yield Footer()

    def paint(self, result: dict[str, Any]) -> RenderableType:
        return Group(pca_view(result, self.selected), Text(NOT_STEERABLE, style="dim italic"))

    def watch_selected(self) -> None:
        self.watch_result(self.result)

    def action_pick(self, step: int) -> None:
        count = len((self.result or {}).get("components", []))
        if count:
            self.selected = (self.selected + step) % count

    @on(Input.Submitted)
    def submitted(self) -> None:
        corpus = self.query_one("#corpus", Input).value.strip() or DEFAULT_CORPUS
        n = self.query_one("#n", Input).value.strip()
        self.query_one(VerticalScroll).focus()  # j / k pick components from here
        self.read(corpus, int(n) if n.isdigit() and int(n) > 0 else DEFAULT_TEXTS)

    @work(exclusive=True)
    async def read(self, corpus: str, n: int) -> None:
        params: dict[str, Any] = {"corpus": corpus, "n": n}
        params |= {"layer": self.at_layer} if self.at_layer is not None else {}
        params |= {"pos": self.at_pos} if self.at_pos is not None else {}
        await self.ask("PCA", "lens.pca", params, f"reading the differences of {n} texts of {corpus}…")
