"""Causal check: how much of the finetune's behaviour lives in its first k positions (issue 13).

The finetuned model's residual at the heatmap cursor's layer is patched at the first k positions after BOS (k of the
run unless typed) with the base model's activations or (`x`) with −mean diff of the run, and its loss is measured
on finetuning texts beside generic text. An empty text line means the recipe an organism adapter was trained on.
"""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.reactive import reactive
from textual.widgets import Footer, Input, Static

from tui.screens.lens_screen import LensScreen
from tui.widgets.lens_views import causal_summary, causal_table

MODES = {"base": "the base model's activations", "diff": "−mean diff of this run added"}


class CausalScreen(LensScreen):
    """Finetuning texts, k, the patch mode, and the loss table; Escape goes back to the workbench."""

    DEFAULT_CSS = """
    CausalScreen Horizontal { height: auto; }
    CausalScreen #texts { width: 1fr; }
    CausalScreen #k { width: 10; }
    """
    BINDINGS = [Binding("x", "toggle_mode", "base ↔ −diff"), Binding("r", "run", "Run")]
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
        self.query_one("#mode", Static).update(f"{where}: first k positions ← {MODES[mode]}   (x toggles)")

    def paint(self, result: dict[str, Any]) -> RenderableType:
        return Group(causal_table(result), causal_summary(result))

    def action_toggle_mode(self) -> None:
        self.mode = "diff" if self.mode == "base" else "base"

    @on(Input.Submitted)
    def submitted(self) -> None:
        self.action_run()

    def action_run(self) -> None:
        k = self.query_one("#k", Input).value.strip()
        self.check(self.query_one("#texts", Input).value.strip(), int(k) if k.isdigit() and int(k) > 0 else None)

    @work(exclusive=True)
    async def check(self, texts: str, k: int | None) -> None:
        params: dict[str, Any] = {"mode": self.mode} | ({"k": k} if k else {}) | ({"ft_corpus": texts} if texts else {})
        if self.at_layer is not None:
            params["layer"] = self.at_layer
        await self.ask("causal check", "lens.causal", params, f"patching the first {k or 'k'} positions…")
