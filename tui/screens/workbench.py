"""The workbench: pair bar, layer heatmap, top tokens, steering and agent panes over one run.

The screen owns the `WorkbenchModel` and the layout and keys; keys and results change the model through the pure
functions in `tui.state`, then `_show()` hands each pane its part. Engine work runs in @work workers through the
app's `EngineLink` and comes back as messages, so a slow engine never blocks a keypress; steering (its memory,
jobs and streamed samples) is the `SteeringController`'s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer

from engine.protocol import methods
from engine.protocol.results import token_pairs
from tui.link import EngineLink
from tui.messages import (
    AgentDone,
    AgentEvent,
    CellSelected,
    EngineConnected,
    LensReady,
    PatchscopeReady,
    Progressed,
    PromptSelected,
    RunReady,
    SummaryReady,
)
from tui.progress_text import event_text
from tui.screens.amplify import AmplifyScreen
from tui.screens.causal import CausalScreen
from tui.screens.divergence import DivergenceScreen
from tui.screens.form import Field, FormScreen
from tui.screens.lens_screen import LensScreen
from tui.screens.mining import MiningScreen
from tui.screens.pca import PcaScreen
from tui.screens.steering_controller import SteeringController
from tui.state import (
    LENS_SOURCES,
    METRIC_LABELS,
    RELEVANCE_MISSING,
    AgentState,
    Start,
    TokensState,
    WorkbenchModel,
    add_prompt,
    agent_failed,
    apply_agent_event,
    apply_agent_result,
    apply_patchscope,
    apply_summary,
    calibrated_cells,
    drop_prompt,
    move_cursor,
    next_metric,
    select_prompt,
    set_alpha,
    set_prompt,
    step_alpha,
)
from tui.widgets.agent import AgentPane
from tui.widgets.heatmap import Heatmap
from tui.widgets.pair_bar import PairBar
from tui.widgets.steering import SteeringPane
from tui.widgets.tokens import TokensPane

STYLES = Path(__file__).resolve().parent.parent / "styles"
LENS_TOP_K = 20
LENS_SCREENS: dict[str, type[LensScreen[Any]]] = {"divergence": DivergenceScreen, "amplify": AmplifyScreen,
                                             "mining": MiningScreen, "causal": CausalScreen, "pca": PcaScreen}

class WorkbenchScreen(Screen[None]):
    """One run on screen; every pane follows the heatmap cursor."""

    CSS_PATH = STYLES / "workbench.tcss"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (36, "-tall")]

    BINDINGS = [
        Binding("m", "metric", "Metric"),
        Binding("0", "toggle_pos0", "Pos 0 in scale", show=False),
        Binding("s", "lens_source", "Lens source", show=False),
        Binding("p", "patchscope", "Patchscope", show=False),
        Binding("left_square_bracket", "scale(-1)", "Scale down", show=False),
        Binding("right_square_bracket", "scale(1)", "Scale up", show=False),
        Binding("r", "steer", "Steer"),
        Binding("plus", "alpha(1)", "α+", key_display="+"),
        Binding("minus", "alpha(-1)", "α−", key_display="-"),
        Binding("a", "edit_alpha", "Set α", show=False),
        Binding("equals_sign", "use_calibrated", "α = calibrated", show=False, key_display="="),
        Binding("c", "calibrate", "Calibrate α", show=False),
        Binding("e", "edit_prompt", "Edit prompt", show=False),
        Binding("n", "new_prompt", "Add prompt", show=False),
        Binding("delete", "drop_prompt", "Remove prompt", show=False),
        Binding("g", "agent", "Run agent", show=False),
        Binding("d", "lens('divergence')", "Type a text: where do they disagree?", show=False),
        Binding("A", "lens('amplify')", "Amplify the adapter", show=False),
        Binding("M", "lens('mining')", "Diff mining over a corpus", show=False),
        Binding("C", "lens('causal')", "Causal check (first k positions, or the mean-diff direction)", show=False),
        Binding("P", "lens('pca')", "PCA of the differences at the cursor", show=False),
        Binding("w", "swap_lower", "Steering/agent", show=False),
        Binding("escape,b", "app.runs", "Runs and sessions", show=False),
    ]

    def __init__(self, start: Start, link: EngineLink) -> None:
        super().__init__()
        self.start = start
        self.link = link
        self.model = WorkbenchModel()
        self.steering = SteeringController(self, self.model, link, self._show)
        self._patch_follows = False

    def compose(self) -> ComposeResult:
        yield PairBar(id="pair-bar")
        with Horizontal(id="upper"):
            yield Heatmap(id="heatmap")
            yield TokensPane(id="tokens")
        with Horizontal(id="lower"):
            with VerticalScroll(id="steer-box"):
                yield SteeringPane(id="steering")
            with VerticalScroll(id="agent-box"):
                yield AgentPane(id="agent")
        yield Footer()

    def on_mount(self) -> None:
        for box in self.query(VerticalScroll):
            box.can_focus = False
        self.query_one("#heatmap").border_title = "layers × positions"
        self.query_one("#steer-box").border_title = "steering"
        self.query_one("#agent-box").border_title = "agent"
        self.query_one(Heatmap).focus()
        self._open()

    def _open(self) -> None:
        """Load the start run, or compute it first (the demo)."""
        if self.start.run is not None:
            self.model.heat = replace(self.model.heat, status=f"loading run {self.start.run}…")
            self.load_run(self.start.run)
        elif self.start.compute is not None:
            self.model.heat = replace(self.model.heat, status="computing the activation difference…")
            self.compute_run(self.start.compute)
        self._show()

    def _show(self) -> None:
        """Hand every pane its part of the model (frozen values: a changed part repaints its pane)."""
        m = self.model
        bar = self.query_one(PairBar)
        bar.view = replace(bar.view, pair=m.pair)
        self.query_one(Heatmap).heat = m.heat
        self.query_one(TokensPane).tokens = m.tokens
        self.query_one(SteeringPane).steer = m.steer
        self.query_one(AgentPane).agent = m.agent
        self.set_class(m.agent.status == "idle", "-agent-idle")  # an idle agent pane leaves steering the width

    # ---- workers: engine calls; results come back as messages -------------------------------------------

    @work(group="run", exclusive=True, exit_on_error=False)
    async def compute_run(self, params: dict[str, Any]) -> None:
        result = None
        try:
            result = await self.link.job("computing ADL", methods.ADL_COMPUTE, methods.AdlCompute.from_json(params))
        finally:
            if result is None:
                self.model.heat = replace(self.model.heat, status="the compute did not finish (cancelled or failed)")
                self._show()
        if result is not None:  # a cancelled or failed compute returns None: there is no run to show
            self.post_message(RunReady(result.run))

    @work(group="run", exclusive=True, exit_on_error=False)
    async def load_run(self, run: str) -> None:
        summary = await self.link.call(methods.ADL_SUMMARY, methods.RunParams(run=run))
        if summary is not None:
            self.post_message(SummaryReady(summary))

    @work(group="lens", exclusive=True, exit_on_error=False)
    async def fetch_lens(self, layer: int, pos: int, source: methods.Source) -> None:
        await asyncio.sleep(0.05)  # a held arrow key asks once it settles, not once per cell
        run = self.model.pair.run if self.model.pair else ""
        result = await self.link.call(methods.LOGIT_LENS, methods.LogitLens(run=run, layer=layer, pos=pos,
                                                                         top_k=LENS_TOP_K, source=source))
        if result is not None:
            self.post_message(LensReady(layer, pos, source, result.tokens, result.head))
        else:
            self._unanswered(layer, pos, lens=True)

    @work(group="patch", exclusive=True, exit_on_error=False)
    async def fetch_patchscope(self, layer: int, pos: int) -> None:
        await asyncio.sleep(0.3)
        run = self.model.pair.run if self.model.pair else ""
        result = await self.link.job(f"Patchscope L{layer} p{pos}", methods.PATCHSCOPE,
                                     methods.Patchscope(run=run, layer=layer, pos=pos),
                                     on_progress=self._progress("patch"))
        if result is not None:
            self.post_message(PatchscopeReady(layer, pos, result))
        else:
            self._unanswered(layer, pos, lens=False)

    @work(group="agent", exclusive=True, exit_on_error=False)
    async def run_agent(self, run: str) -> None:
        result = await self.link.job("agent", methods.AGENT_RUN, methods.AgentRun(run=run),
                                     on_partial=lambda event: self.post_message(AgentEvent(event.get("event", event))),
                                     on_progress=self._progress("agent"))
        if result is not None:
            self.post_message(AgentDone(result))
            return
        keywords = await self.link.call(methods.AGENT_KEYWORDS, methods.AgentKeywords(run=run), quiet=True)
        self.post_message(AgentDone(None, "the agent did not finish", keywords))

    def _progress(self, pane: str) -> Callable[[dict[str, Any]], object]:
        """Progress events of a job that `pane` waits on, as `Progressed` messages."""
        return lambda event: self.post_message(Progressed(pane, event_text(event)))

    # ---- results ------------------------------------------------------------------------------------------

    def on_progressed(self, message: Progressed) -> None:
        """The pane that waits says how far its job is (steps, ETA); the pair bar shows only the newest job."""
        m = self.model
        if message.pane == "patch" and m.tokens.patch_status:
            m.tokens = replace(m.tokens, patch_status=message.text)
        elif message.pane == "agent" and m.agent.status == "running":
            m.agent = replace(m.agent, note=message.text)
        self._show()

    def unanswered_text(self) -> str:
        """What a readout pane says when its call failed (instead of waiting forever)."""
        return "no answer (the notification says why)"

    def _unanswered(self, layer: int, pos: int, lens: bool) -> None:
        t = self.model.tokens
        if (t.layer, t.pos) == (layer, pos):
            text = self.unanswered_text()
            self.model.tokens = replace(t, lens_status=text) if lens else replace(t, patch_status=text)
            self._show()

    def on_run_ready(self, message: RunReady) -> None:
        self.load_run(message.run)

    def on_summary_ready(self, message: SummaryReady) -> None:
        """Paint the run; the same run again (a reconnect) keeps the cursor, metric and steering cell. A triaged run
        (its calibration stored) opens where triage left off: calibrated α, Patchscope and the report's steering
        samples at the chosen cell, all answered from the cache."""
        before = self.model.heat if self.model.pair and self.model.pair.run == message.summary.run else None
        apply_summary(self.model, message.summary)
        triaged = calibrated_cells(message.summary)
        self.steering.learn_calibrated(triaged)
        if before is not None:
            self.model.heat = replace(self.model.heat, row=before.row, pos=before.pos, metric=before.metric,
                                      include_pos0=before.include_pos0)
        self.steering.follow()
        self._show()
        self._refetch_cell()
        if before is None and triaged:
            self._patchscope_here()
            if self.model.steer.alpha_from == "calibrated" and self.model.steer.alpha > 0:
                self.steering.steer()

    def on_lens_ready(self, message: LensReady) -> None:
        t = self.model.tokens
        if (message.layer, message.pos, message.source) != (t.layer, t.pos, t.source):
            return
        lens = token_pairs(message.tokens)
        self.model.tokens = replace(t, lens=lens, head=message.head, lens_status="" if lens else "no tokens")
        self._show()

    def on_patchscope_ready(self, message: PatchscopeReady) -> None:
        t = self.model.tokens
        if (message.layer, message.pos) == (t.layer, t.pos):
            self.model.tokens = apply_patchscope(t, message.result)
            self._show()

    def on_agent_event(self, message: AgentEvent) -> None:
        self.model.agent = apply_agent_event(self.model.agent, message.event)
        self._show()

    def on_agent_done(self, message: AgentDone) -> None:
        if message.result is not None:
            self.model.agent = apply_agent_result(self.model.agent, message.result)
        else:
            run = self.model.pair.run if self.model.pair else "RUN"
            self.model.agent = agent_failed(self.model.agent, run, message.keywords)
        self._show()

    def on_engine_connected(self, message: EngineConnected) -> None:
        """After a reconnect: reopen what was open (the engine's caches make it cheap)."""
        if self.model.pair is not None:
            self.load_run(self.model.pair.run)
        else:
            self._open()

    # ---- keys ---------------------------------------------------------------------------------------------

    @on(CellSelected)
    def _cell_selected(self, message: CellSelected) -> None:
        heat = move_cursor(self.model.heat, message.d_row, message.d_pos)
        if heat == self.model.heat:
            return
        self.model.heat = heat
        self.steering.follow()
        self._refetch_cell()

    def _refetch_cell(self) -> None:
        """The cursor is on a new cell: empty the token pane and ask for its readouts."""
        heat, old = self.model.heat, self.model.tokens
        if not heat.layers:
            return
        self.model.tokens = TokensState(layer=heat.layer, pos=heat.pos, source=old.source, lens_status="reading…",
                                        patch_status="reading…" if self._patch_follows else
                                        TokensState.patch_status)
        self._show()
        self.fetch_lens(heat.layer, heat.pos, old.source)
        if self._patch_follows:
            self.fetch_patchscope(heat.layer, heat.pos)

    def action_metric(self) -> None:
        """Cycle diff / base norm → diff norm → relevance (saying why when the run has no relevance)."""
        self.model.heat = next_metric(self.model.heat)
        self._show()
        if self.model.heat.layers and "relevance" not in self.model.heat.metrics:
            self.notify(f"showing {METRIC_LABELS[self.model.heat.metric]}; {RELEVANCE_MISSING}", timeout=6)

    def action_toggle_pos0(self) -> None:
        """Position 0 in or out of the colour scale (out by default: its huge norm flattens the rest)."""
        self.model.heat = replace(self.model.heat, include_pos0=not self.model.heat.include_pos0)
        self._show()

    def action_lens_source(self) -> None:
        """Logit lens of the diff, the base activation or the finetuned activation."""
        t = self.model.tokens
        source = LENS_SOURCES[(LENS_SOURCES.index(t.source) + 1) % len(LENS_SOURCES)]
        self.model.tokens = replace(t, source=source, head="", lens=(), lens_status="reading…")
        self._show()
        self.fetch_lens(t.layer, t.pos, source)

    def action_patchscope(self) -> None:
        """Run Patchscope on the selected cell; from then on it follows the cursor."""
        if self.model.pair is not None:
            self._patch_follows = True
            self._patchscope_here()

    def _patchscope_here(self) -> None:
        """Patchscope of the selected cell only (a triaged run's chosen cell: from the cache)."""
        t = self.model.tokens
        self.model.tokens = replace(t, patch_status="running Patchscope…")
        self._show()
        self.fetch_patchscope(t.layer, t.pos)

    def action_scale(self, delta: int) -> None:
        """Show the next or previous Patchscope scale."""
        t = self.model.tokens
        if t.shown_scale is not None:
            self.model.tokens = replace(t, scale_index=max(0, min(len(t.scales) - 1, t.shown_scale + delta)))
            self._show()

    def action_steer(self) -> None:
        """Steer at the selected cell (calibrating it first; samples shown before come back with no job)."""
        self.steering.steer()

    def action_alpha(self, direction: int) -> None:
        """Step α by ×√2 (or ÷√2) and steer."""
        self.model.steer = step_alpha(self.model.steer, direction)
        self.steering.steer()

    def action_use_calibrated(self) -> None:
        """Set α to the calibrated strength and re-run."""
        self.steering.use_calibrated()

    def action_calibrate(self) -> None:
        """Find the largest coherent α at the selected cell, then steer with it."""
        self.steering.calibrate()

    def action_edit_alpha(self) -> None:
        """Type an α; submitting re-runs steering."""
        def done(values: dict[str, str] | None) -> None:
            if not values:
                return
            try:
                alpha = float(values["alpha"])
            except ValueError:
                self.notify(f"α must be a number, got {values['alpha']!r}", severity="error")
                return
            self.model.steer = set_alpha(self.model.steer, alpha)
            self.steering.steer()

        self.app.push_screen(FormScreen("steering strength α", [Field("alpha", "α", f"{self.model.steer.alpha:g}")]),
                             done)

    def action_edit_prompt(self) -> None:
        """Edit the selected prompt; submitting re-runs steering."""
        steer = self.model.steer
        if not steer.prompts:
            self.action_new_prompt()
            return
        i = steer.selected

        def done(values: dict[str, str] | None) -> None:
            if values and values["prompt"].strip():
                self.model.steer = set_prompt(self.model.steer, i, values["prompt"])
                self.steering.steer()

        self.app.push_screen(FormScreen("edit prompt", [Field("prompt", "prompt", steer.prompts[i])]), done)

    def action_new_prompt(self) -> None:
        """Add a prompt; submitting re-runs steering."""
        def done(values: dict[str, str] | None) -> None:
            if values and values["prompt"].strip():
                self.model.steer = add_prompt(self.model.steer, values["prompt"])
                self.steering.steer()

        self.app.push_screen(FormScreen("new prompt", [Field("prompt", "prompt", placeholder="Tell me about")]), done)

    def action_drop_prompt(self) -> None:
        """Remove the selected prompt from the list."""
        self.model.steer = drop_prompt(self.model.steer)
        self._show()

    @on(PromptSelected)
    def _prompt_selected(self, message: PromptSelected) -> None:
        self.model.steer = select_prompt(self.model.steer, message.delta)
        self._show()

    def action_agent(self) -> None:
        """Run the interpretability agent on this run."""
        if self.model.pair is None:
            return
        self.model.agent = AgentState(status="running", note="")
        self.add_class("-show-agent")
        self._show()
        self.run_agent(self.model.pair.run)

    def action_lens(self, name: str) -> None:
        """Open a lens view on this run at the cursor's layer: `d` where the two models disagree on a typed text,
        `A` the amplified adapter, `M` diff mining over a corpus, `C` the causal check (first k positions or the
        mean-diff direction), `P` the PCA of the differences at the cursor's cell."""
        if self.model.pair is not None:
            heat = self.model.heat
            layer, pos = (heat.layer, heat.pos) if heat.layers else (None, None)
            self.app.push_screen(LENS_SCREENS[name](self.model.pair.run, self.link, layer, pos))

    def action_swap_lower(self) -> None:
        """In a narrow terminal, switch the lower pane between steering and the agent."""
        self.toggle_class("-show-agent")
