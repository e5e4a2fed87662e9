"""Causal check: where the finetune's behaviour lives (issues 13 and 22).

`x` cycles three experiments at the heatmap cursor's layer: the first k positions after BOS (k of the run unless
typed) patched with the base model's activations, or with −mean diff of the run; or the paper's direction test,
the finetune's component along the run's mean diff at the cursor's position set to the base model's at every
token, beside random-vector and random-diff controls. Loss is measured on finetuning texts beside generic text
(and chat text for the direction test). An empty text line means the recipe an organism adapter was trained on.
"""

from __future__ import annotations

from dataclasses import replace

from rich.console import RenderableType
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.reactive import reactive
from textual.widgets import Footer, Input, Static

from engine.protocol import methods
from engine.protocol.results import CausalAnswer
from tui.render.lens_views import causal_view
from tui.screens.lens_screen import LensScreen

MODES = {"base": "first k positions ← the base model's activations",
         "diff": "first k positions ← −mean diff of this run",
         "direction": "the mean-diff direction set to the base's at every token, against random controls"}
PARAMS = {"base": methods.LensCausal(mode="patch", patch="base"),
          "diff": methods.LensCausal(mode="patch", patch="diff"),
          "direction": methods.LensCausal(mode="direction")}


class CausalScreen(LensScreen[CausalAnswer]):
    """Finetuning texts, k, the patch mode, and the loss table; Escape goes back to the workbench."""

    DEFAULT_CSS = """
    CausalScreen Horizontal { height: auto; }
    CausalScreen #texts { width: 1fr; }
    CausalScreen #k { width: 10; }
    """
    BINDINGS = [Binding("x", "toggle_mode", "base → −diff → direction"), Binding("r", "run", "Run")]
    AUTO_FOCUS = "VerticalScroll"
    mode: reactive[str] = reactive("base")

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield Input(placeholder="finetuning texts: empty = the organism's recipe; recipe:NAME, a file or hf:NAME",
                        id="texts")
            yield Input(placeholder="k: the run's", type="integer", id="k")
        yield Static("", id="mode")
        yield self.answer_pane("r (or Enter in a field) runs the check")
        yield Footer()

    def watch_mode(self, mode: str) -> None:
        where = f"layer {self.at_layer}" if self.at_layer is not None else "the run's report layer"
        self.query_one("#mode", Static).update(f"{where}: {MODES[mode]}   (x cycles)")

    def paint(self, result: CausalAnswer) -> RenderableType:
        return causal_view(result)

    def action_toggle_mode(self) -> None:
        names = list(MODES)
        self.mode = names[(names.index(self.mode) + 1) % len(names)]

    @on(Input.Submitted)
    def submitted(self) -> None:
        self.action_run()

    def action_run(self) -> None:
        k = self.query_one("#k", Input).value.strip()
        self.check(self.query_one("#texts", Input).value.strip(), int(k) if k.isdigit() and int(k) > 0 else None)

    @work(exclusive=True)
    async def check(self, texts: str, k: int | None) -> None:
        params = replace(PARAMS[self.mode], run=self.run, k=k or None, ft_corpus=texts or None, layer=self.at_layer,
                         pos=self.at_pos if self.mode == "direction" else None)
        waiting = "ablating the direction and the controls…" if self.mode == "direction" else \
            f"patching the first {k or 'k'} positions…"
        await self.ask("causal check", methods.LENS_CAUSAL, params, waiting)
