"""The pane that waits on a job says its steps and ETA, as the pair bar does: steering, Patchscope and a lens view
(mining) driven by Pilot over recorded answers, each job held open after one progress event."""

from __future__ import annotations

import pytest
from textual.widgets import Input, Static

from tests.support.engine_helpers import until
from tests.support.tui_helpers import HeldReplay, make_app, plain, recording, settle
from tui.app import DiffLensApp
from tui.screens.mining import MiningScreen
from tui.widgets.heatmap import Heatmap
from tui.widgets.pair_bar import PairBar
from tui.widgets.steering import SteeringPane
from tui.widgets.tokens import TokensPane

PROGRESS = {
    "steer.generate": {"message": "steering layer 12: tokens", "done": 40, "total": 96, "elapsed_s": 1.0, "eta_s": 3.0},
    "readout.patchscope": {"message": "patchscope at layer 12: scaled vectors read", "done": 7, "total": 41,
                           "elapsed_s": 1.0, "eta_s": 65.0},
    "lens.mine": {"message": "texts", "done": 8, "total": 20, "elapsed_s": 1.0, "eta_s": 12.0},
}


async def run_open(app: DiffLensApp) -> None:
    """Until the workbench shows the recorded run's heatmap."""
    await until(lambda: app.screen.query(Heatmap) and app.screen.query_one(Heatmap).heat.layers, 10, "the run")


@pytest.mark.asyncio
async def test_steering_and_patchscope_panes_show_steps_and_eta() -> None:
    client = HeldReplay(recording(), PROGRESS)
    app, _ = make_app(client)
    async with app.run_test(size=(160, 48)) as pilot:
        await run_open(app)
        await pilot.press("r")
        steering = app.screen.query_one(SteeringPane)
        await until(lambda: "steering layer 12: tokens 40/96, ETA 3s" in steering.steer.status, 10,
                    "the steering job's steps in its pane")
        await until(lambda: "40/96 ETA 3s" in plain(app.screen.query_one(PairBar)), 10, "the job in the pair bar")
        await pilot.press("p")
        tokens = app.screen.query_one(TokensPane)
        await until(lambda: "patchscope at layer 12: scaled vectors read 7/41, ETA 1m05s" in plain(tokens), 10,
                    "the Patchscope job's steps in the token pane")
        client.gate.set()
        await settle(pilot)
        assert "tokens 40/96" not in app.screen.query_one(SteeringPane).steer.status


@pytest.mark.asyncio
async def test_a_lens_view_shows_its_jobs_steps_and_eta() -> None:
    client = HeldReplay(recording(), PROGRESS)
    app, _ = make_app(client)
    async with app.run_test(size=(160, 48)) as pilot:
        await run_open(app)
        await pilot.press("M")
        mining = await until(lambda: isinstance(app.screen, MiningScreen) and app.screen, 10, "the mining view")
        mining.query_one("#corpus", Input).value = "fineweb"
        mining.query_one("#n", Input).value = "20"
        mining.query_one("#corpus", Input).focus()
        await pilot.press("enter")
        answer = mining.query_one("#answer", Static)
        await until(lambda: "texts 8/20, ETA 12s" in plain(answer), 10, "the mining job's steps in its view")
        client.gate.set()
        await settle(pilot)
