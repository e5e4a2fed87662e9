"""PCA of the differences at the heatmap cursor's cell (issue 22).

The per-text differences (ft − base) at the cursor's layer and position over a corpus (the shipped generic text
unless typed), their principal components by explained variance and each one's logit-lens tokens both ways.
Enter runs and moves to the table, where `j`/`k` pick a component, `s` steers with it (both signs, at the mean
diff's calibrated strength at this cell, beside the unsteered text) and `e` edits the corpus again.
"""

from __future__ import annotations

from dataclasses import replace

from rich.console import Group, RenderableType
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.reactive import reactive
from textual.widgets import Footer, Input

from engine.protocol import methods
from engine.protocol.results import PcaAnswer, Steered
from tui.presets import GENERIC, PCA, STEER
from tui.render.lens_views import component_steering_view, pca_view
from tui.screens.lens_screen import LensScreen

DEFAULT_CORPUS = GENERIC
DEFAULT_TEXTS = PCA.n
STEER_HINT = "s steers with the selected component (± the mean diff's calibrated strength at this cell)"


class PcaScreen(LensScreen[PcaAnswer]):
    """A corpus line, a text count, the components table; Escape goes back to the workbench."""

    DEFAULT_CSS = """
    PcaScreen Horizontal { height: auto; }
    PcaScreen #corpus { width: 1fr; }
    PcaScreen #n { width: 12; }
    """
    BINDINGS = [Binding("j", "pick(1)", "Next component"), Binding("k", "pick(-1)", "Previous component"),
                Binding("s", "steer", "Steer with it"), Binding("e", "edit", "Edit corpus")]
    AUTO_FOCUS = "#corpus"
    selected: reactive[int] = reactive(0)
    steered: reactive[Steered | None] = reactive(None)

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield Input(DEFAULT_CORPUS, placeholder="corpus: generic:, recipe:NAME, a file or hf:NAME; Enter runs",
                        id="corpus")
            yield Input(str(DEFAULT_TEXTS), placeholder="texts", type="integer", id="n")
        yield self.answer_pane("Enter reads the principal components of the per-text differences at this cell")
        yield Footer()

    def paint(self, result: PcaAnswer) -> RenderableType:
        steered = self.steered
        if steered is not None and steered.component is not None and steered.component.index == self.selected:
            return Group(pca_view(result, self.selected), component_steering_view(steered))
        return Group(pca_view(result, self.selected), Text(STEER_HINT, style="dim italic"))

    def watch_selected(self) -> None:
        self.watch_result(self.result)

    def watch_steered(self) -> None:
        self.watch_result(self.result)

    def action_steer(self) -> None:
        if self.result and self.result.components:
            self.steer(self.result, self.selected)

    @work(exclusive=True, group="steer")
    async def steer(self, read: PcaAnswer, index: int) -> None:
        """The component as the steering vector at the PCA's own layer and position."""
        params = replace(STEER, run=self.run, layer=read.layer, pos=read.pos,
                         component={"result": read.result, "index": index})
        self.notify(f"steering with component {index}…")
        self.steered = await self.link.job("steer", methods.STEER_GENERATE, params)

    def action_pick(self, step: int) -> None:
        count = len(self.result.components) if self.result else 0
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
        params = replace(PCA, run=self.run, corpus=corpus, n=n, layer=self.at_layer, pos=self.at_pos)
        await self.ask("PCA", methods.LENS_PCA, params, f"reading the differences of {n} texts of {corpus}…")
