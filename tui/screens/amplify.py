"""Exaggerate a LoRA finetune: the adapter's weight delta scaled by a factor, beside base and plain finetune.

Presets (`1`–`4`) pick the factor, `+`/`-` nudge it like a slider, `e` edits the prompt; Enter (in the prompt
line) or `r` runs `lens.amplify` for the run's pair in a worker. Factor 0 is the base model, 1 the finetune.
"""

from __future__ import annotations

from typing import Any

from rich.console import RenderableType
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.reactive import reactive
from textual.widgets import Footer, Input, Static

from tui.screens.lens_screen import LensScreen
from tui.widgets.lens_views import amplify_table

PRESETS = (-1.0, 0.5, 2.0, 3.0)
STEP = 0.5


class AmplifyScreen(LensScreen):
    """A prompt line, the factor, and the side-by-side answer."""

    BINDINGS = [
        *[Binding(str(i + 1), f"preset({i})", f"×{f:g}") for i, f in enumerate(PRESETS)],
        Binding("plus", "nudge(1)", "factor +", key_display="+"),
        Binding("minus", "nudge(-1)", "factor −", key_display="-"),
        Binding("r", "run", "Run"),
        Binding("e", "edit", "Edit prompt"),
    ]
    AUTO_FOCUS = "VerticalScroll"  # the factor keys work at once; `e` moves into the prompt line
    factor: reactive[float] = reactive(2.0)

    def compose(self) -> ComposeResult:
        yield Input(placeholder="a prompt (empty: the shipped calibration prompts), Enter runs", id="prompt")
        yield Static("", id="factor")
        yield self.answer_pane()
        yield Footer()

    def watch_factor(self, factor: float) -> None:
        self.query_one("#factor", Static).update(f"adapter delta × {factor:g}   (0 = base, 1 = finetune)")

    def paint(self, result: dict[str, Any]) -> RenderableType:
        return amplify_table(result)

    def action_preset(self, index: int) -> None:
        self.factor = PRESETS[index]

    def action_nudge(self, direction: int) -> None:
        self.factor = round(self.factor + direction * STEP, 3)

    def action_run(self) -> None:
        self.amplify(self.query_one("#prompt", Input).value)

    @on(Input.Submitted, "#prompt")
    def submitted(self, event: Input.Submitted) -> None:
        self.query_one(VerticalScroll).focus()
        self.amplify(event.value)

    @work(exclusive=True)
    async def amplify(self, prompt: str) -> None:
        params: dict[str, Any] = {"factors": [self.factor]} | ({"prompts": [prompt]} if prompt.strip() else {})
        await self.ask("amplify", "lens.amplify", params, "generating…")
