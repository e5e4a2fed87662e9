"""Exaggerate a finetune: the adapter's weight delta (or a full finetune's weight difference) scaled by a factor,
beside base and plain finetune.

Presets (`1`–`4`) pick the factor, `+`/`-` nudge it like a slider, `m` cycles the module kind scaled (all,
attention, MLP), `l` the layers (all, up to the heatmap cursor's layer, that layer only), `e` edits the prompt;
Enter (in the prompt line) or `r` runs `lens.amplify` for the run's pair in a worker. Factor 0 is the base model
in what is scaled, 1 the finetune.
"""

from __future__ import annotations

from typing import get_args

from rich.console import RenderableType
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.reactive import reactive
from textual.widgets import Footer, Input, Static

from engine.protocol import methods
from engine.protocol.results import AmplifyAnswer
from tui.render.lens_views import amplify_table
from tui.screens.lens_screen import LensScreen

PRESETS = (-1.0, 0.5, 2.0, 3.0)
STEP = 0.5
MODULES: tuple[methods.Modules, ...] = get_args(methods.Modules)
LAYER_RANGES = ("all", "up to the cursor", "the cursor's layer")


class AmplifyScreen(LensScreen[AmplifyAnswer]):
    """A prompt line, the factor, and the side-by-side answer."""

    BINDINGS = [
        *[Binding(str(i + 1), f"preset({i})", f"×{f:g}") for i, f in enumerate(PRESETS)],
        Binding("plus", "nudge(1)", "factor +", key_display="+"),
        Binding("minus", "nudge(-1)", "factor −", key_display="-"),
        Binding("m", "cycle_modules", "Modules"),
        Binding("l", "cycle_layers", "Layers"),
        Binding("r", "run", "Run"),
        Binding("e", "edit", "Edit prompt"),
    ]
    AUTO_FOCUS = "#prompt"  # typed letters go into the prompt, not to the keys; Enter or Tab leaves it
    factor: reactive[float] = reactive(2.0)
    modules: reactive[methods.Modules] = reactive(methods.LensAmplify.modules)
    layer_range: reactive[str] = reactive("all")

    def compose(self) -> ComposeResult:
        yield Input(placeholder="a prompt (empty: the shipped calibration prompts), Enter runs", id="prompt")
        yield Static("", id="factor")
        yield self.answer_pane()
        yield Footer()

    def watch_factor(self) -> None:
        self._describe()

    def watch_modules(self) -> None:
        self._describe()

    def watch_layer_range(self) -> None:
        self._describe()

    def _layers(self) -> list[int] | None:
        """The layer range sent to the op (the whole model when the cursor's layer is unknown)."""
        if self.at_layer is None or self.layer_range == "all":
            return None
        return [0 if self.layer_range == "up to the cursor" else self.at_layer, self.at_layer]

    def _describe(self) -> None:
        layers = self._layers()
        where = "all layers" if layers is None else f"layers {layers[0]}–{layers[1]}"
        self.query_one("#factor", Static).update(
            f"finetune's change × {self.factor:g} in {self.modules} modules, {where}   (0 = base, 1 = finetune; "
            "m modules, l layers; Tab leaves the prompt, e goes back)")

    def paint(self, result: AmplifyAnswer) -> RenderableType:
        return amplify_table(result)

    def action_preset(self, index: int) -> None:
        self.factor = PRESETS[index]

    def action_nudge(self, direction: int) -> None:
        self.factor = round(self.factor + direction * STEP, 3)

    def action_cycle_modules(self) -> None:
        self.modules = MODULES[(MODULES.index(self.modules) + 1) % len(MODULES)]

    def action_cycle_layers(self) -> None:
        self.layer_range = LAYER_RANGES[(LAYER_RANGES.index(self.layer_range) + 1) % len(LAYER_RANGES)]

    def action_run(self) -> None:
        self.amplify(self.query_one("#prompt", Input).value)

    @on(Input.Submitted, "#prompt")
    def submitted(self, event: Input.Submitted) -> None:
        self.query_one(VerticalScroll).focus()
        self.amplify(event.value)

    @work(exclusive=True)
    async def amplify(self, prompt: str) -> None:
        params = methods.LensAmplify(run=self.run, factors=[self.factor], modules=self.modules, layers=self._layers(),
                                     prompts=[prompt] if prompt.strip() else None)
        await self.ask("amplify", methods.LENS_AMPLIFY, params, "generating…")
