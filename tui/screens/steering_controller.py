"""The workbench's steering: its memory and the engine jobs that fill the steering pane.

The screen keeps the layout and the keys; a key that steers calls this controller. It holds the `SteerMemory`
(frozen, changed only by the pure transitions in `tui.state`), runs the steering and calibration workers on the
screen, streams their samples and progress into the model as they come (in the order the engine sent them),
cancels the run a newer one replaces, and paints samples shown before with no job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from textual.screen import Screen

from engine.protocol import methods
from tui.link import EngineLink
from tui.presets import STEER
from tui.progress_text import event_text
from tui.state import (
    Cell,
    SteerMemory,
    WorkbenchModel,
    calibration_done,
    calibration_started,
    calibration_stopped,
    follow,
    follow_cell,
    needs_calibration,
    press_steer,
    steer_finished,
    steer_streamed,
    use_calibrated,
    with_calibrated,
    with_choice,
)

STEER_GROUP = "steer"
CALIBRATE_GROUP = "calibrate"


class SteeringController:
    """Steering at the cursor's cell of one workbench: `steer()` is `r`, `calibrate()` is `c`."""

    def __init__(self, screen: Screen[Any], model: WorkbenchModel, link: EngineLink, show: Callable[[], None]) -> None:
        self.screen = screen
        self.model = model
        self.link = link
        self.show = show
        self.memory = SteerMemory()

    @property
    def _run(self) -> str:
        return self.model.pair.run if self.model.pair else ""

    def learn_calibrated(self, cells: dict[Cell, float]) -> None:
        """Calibrated strengths the engine already has (a triaged run's summary brings its chosen layer's)."""
        self.memory = with_calibrated(self.memory, cells)

    def follow(self) -> None:
        """Steering moves to the cursor's cell (its α, and the samples shown there before at that α)."""
        self.memory, self.model.steer = follow(self.memory, self.model.steer, self.model.heat)

    def steer(self) -> None:
        """Steer at the selected cell with the current α and prompts. Before the cell is calibrated, calibrate
        first (cached calibrations answer at once); a result already shown is painted with no new job; a new
        job replaces (cancels) the one still running."""
        heat = self.model.heat
        if self.model.pair is None or not heat.layers:
            self.screen.notify("open a run first", severity="warning")
            return
        if needs_calibration(self.memory, self.model.steer, heat):
            self.calibrate()
            return
        self.memory, self.model.steer, job = press_steer(self.memory, self.model.steer, heat)
        if not job:
            self.screen.workers.cancel_group(self.screen, STEER_GROUP)
            self.show()
            return
        self.show()
        steer = self.model.steer
        params = replace(STEER, run=self._run, layer=heat.layer, pos=heat.pos, strengths=[steer.alpha],
                         prompts=list(steer.prompts) or None)
        self.screen.run_worker(self._steering(self.memory.tag, params, steer.alpha), group=STEER_GROUP,
                               exclusive=True, exit_on_error=False)

    def use_calibrated(self) -> None:
        """α back to the cell's calibrated strength, and steer."""
        if self.model.steer.calibrated is None:
            self.screen.notify("no calibrated α yet: press c to calibrate", severity="warning")
            return
        self.model.steer = use_calibrated(self.model.steer)
        self.memory = with_choice(self.memory, (self.model.heat.layer, self.model.heat.pos), None)
        self.steer()

    def calibrate(self) -> None:
        """Find the largest coherent α at the selected cell, then steer with it."""
        if self.model.pair is None:
            return
        heat = self.model.heat
        cell = (heat.layer, heat.pos)
        self.memory, self.model.steer = calibration_started(self.memory, self.model.steer, cell)
        self.show()
        self.screen.run_worker(self._calibration(cell), group=CALIBRATE_GROUP, exclusive=True, exit_on_error=False)

    def _progressed(self, event: dict[str, Any]) -> None:
        self.model.steer = replace(self.model.steer, status=event_text(event))
        self.show()

    async def _steering(self, tag: int, params: methods.SteerGenerate, alpha: float) -> None:
        def streamed(event: dict[str, Any]) -> None:
            self.model.steer = steer_streamed(self.memory, self.model.steer, tag, event)
            self.show()

        result = None
        try:
            result = await self.link.job(f"steering α {alpha:g}", methods.STEER_GENERATE, params,
                                         on_partial=streamed, on_progress=self._progressed)
        finally:  # also when cancelled (x, or a newer run replacing this one)
            self.memory, self.model.steer = steer_finished(self.memory, self.model.steer, tag, result)
            self.show()

    async def _calibration(self, cell: Cell) -> None:
        layer, pos = cell
        result = await self.link.job(f"calibrating L{layer} p{pos}", methods.STEER_CALIBRATE,
                                     methods.SteerCalibrate(run=self._run, layer=layer, pos=pos),
                                     on_progress=self._progressed)
        if result is None:
            self.memory, self.model.steer = calibration_stopped(self.memory, self.model.steer, cell)
            self.show()
            return
        strength = result.strength
        self.memory = calibration_done(self.memory, cell, strength)
        judge, ungraded = result.judge, result.ungraded
        judged = f", judged by {judge}" if judge else ""
        unjudged = f"; {ungraded} samples ungraded" if ungraded else ""
        self.screen.notify(f"calibrated α = {strength:.4g} at L{layer} p{pos} "
                           f"(largest coherent strength{judged}{unjudged})")
        heat = self.model.heat
        if (heat.layer, heat.pos) == cell:
            self.model.steer = follow_cell(self.model.steer, heat, strength)
            self.steer()
