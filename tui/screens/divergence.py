"""Where the two models disagree: per-token KL(ft‖base) or ‖diff‖ painted on a typed text, or the top
max-divergence snippets of a corpus (issue 13).

The screen sends `lens.kl` for the run's pair at the heatmap cursor's layer and paints the answer; a token's
background is its value on the viridis scale of the heatmap (a KL value sits on the token the prediction follows),
and each text's most divergent spot shows what each model predicted. `n` switches the painted value between KL
and the norm of the activation difference at the layer.
"""

from __future__ import annotations

from rich.console import RenderableType
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.reactive import reactive
from textual.widgets import Footer, Input

from engine.protocol import methods
from engine.protocol.results import KlAnswer
from tui.presets import KL_CORPUS
from tui.render.lens_views import divergence_view
from tui.screens.lens_screen import LensScreen

CORPUS_PREFIX = "@"
CORPUS_TEXTS = KL_CORPUS.n


def divergence_params(run: str, typed: str, layer: int | None) -> methods.LensKl:
    """`lens.kl` params for what was typed: a text, or `@SOURCE` for the top snippets of a corpus."""
    if typed.startswith(CORPUS_PREFIX):
        return methods.LensKl(run=run, layer=layer, corpus=typed.removeprefix(CORPUS_PREFIX).strip(), n=CORPUS_TEXTS)
    return methods.LensKl(run=run, layer=layer, texts=[typed])


class DivergenceScreen(LensScreen[KlAnswer]):
    """An input line and the painted answer."""

    BINDINGS = [Binding("n", "toggle_metric", "KL ↔ ‖diff‖"), Binding("e", "edit", "Edit the text")]
    AUTO_FOCUS = "Input"
    metric: reactive[str] = reactive("kl")
    snippets = False  # the answer is a corpus's top snippets, not the typed text

    def compose(self) -> ComposeResult:
        yield Input(placeholder="type a text and press Enter (or @CORPUS, e.g. @recipe:cake-sdf or @generic:, for "
                                "its most divergent snippets)", id="text")
        yield self.answer_pane()
        yield Footer()

    def paint(self, result: KlAnswer) -> RenderableType:
        return divergence_view(result, snippets=self.snippets, metric=self.metric)

    def watch_metric(self) -> None:
        self.watch_result(self.result)

    def action_toggle_metric(self) -> None:
        self.metric = "diff_norm" if self.metric == "kl" else "kl"

    @on(Input.Submitted, "#text")
    def submitted(self, event: Input.Submitted) -> None:
        typed = event.value.strip()
        if typed and typed != CORPUS_PREFIX:
            self.query_one("#answer-pane").focus()
            params = divergence_params(self.run, typed, self.at_layer)
            self.snippets = params.corpus is not None
            self.divergence(params)

    @work(exclusive=True)
    async def divergence(self, params: methods.LensKl) -> None:
        self.result = None
        await self.ask("divergence", methods.LENS_KL, params, "computing per-token divergence…")
