"""Causal check: how much of the finetune's behaviour lives in its first k positions (issue 13).

The finetuned model's residual at the run's middle layer is patched at the first k positions after BOS (k of the
run unless typed), with
the base model's activations or (`x`) with −mean diff of the run, and its loss is measured on finetuning texts
beside generic text. An empty text line means the recipe an organism adapter was trained on.
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
from tui.widgets.lens_views import causal_summary, causal_table

MODES = {"base": "the base model's activations", "diff": "−mean diff of this run added"}


class CausalScreen(Screen[None]):
    """Finetuning texts, k, the patch mode, and the loss table; Escape goes back to the workbench."""

    DEFAULT_CSS = """
    CausalScreen Horizontal { height: auto; }
    CausalScreen #texts { width: 1fr; }
    CausalScreen #k { width: 10; }
    """
    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), Binding("x", "toggle_mode", "base ↔ −diff"),
                Binding("r", "run", "Run")]
    AUTO_FOCUS = "VerticalScroll"
    mode: reactive[str] = reactive("base")
    result: reactive[dict[str, Any] | None] = reactive(None)

    def __init__(self, run: str, link: EngineLink) -> None:
        super().__init__()
        self.run = run
        self.link = link

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield Input(placeholder="finetuning texts: empty = the organism's recipe; recipe:NAME, a file or hf:NAME",
                        id="texts")
            yield Input(placeholder="k: the run's", type="integer", id="k")
        yield Static("", id="mode")
        with VerticalScroll():
            yield Static("r (or Enter in a field) runs the check", id="answer")
        yield Footer()

    def watch_mode(self, mode: str) -> None:
        self.query_one("#mode", Static).update(f"first k positions ← {MODES[mode]}   (x toggles)")

    def watch_result(self, result: dict[str, Any] | None) -> None:
        if result is not None:
            self.query_one("#answer", Static).update(Group(causal_table(result), causal_summary(result)))

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
        answer = self.query_one("#answer", Static)
        answer.update(f"patching the first {k or 'k'} positions…")
        params: dict[str, Any] = {"run": self.run, "mode": self.mode} | ({"k": k} if k else {})
        if texts:
            params["ft_corpus"] = texts
        result = await self.link.job("causal check", "lens.causal", params)
        if result is None:
            answer.update("the causal check failed (the notification says why)")
        else:
            self.result = result
