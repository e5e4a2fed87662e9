"""The pane that waits on a job says its steps and ETA, as the pair bar does: steering, Patchscope and a lens view
(mining) driven by Pilot over recorded answers, each job held open after one progress event."""

from __future__ import annotations

import pytest
from textual.widgets import Input, Static

from tests.support.tui_helpers import HeldReplay, make_app, plain, recording, settle
from tui.screens.mining import MiningScreen
from tui.widgets.pair_bar import PairBar
from tui.widgets.steering import SteeringPane
from tui.widgets.tokens import TokensPane

PROGRESS = {
    "steer.generate": {"message": "steering layer 12: tokens", "done": 40, "total": 96, "elapsed_s": 1.0, "eta_s": 3.0},
    "readout.patchscope": {"message": "patchscope at layer 12: scaled vectors read", "done": 7, "total": 41,
                           "elapsed_s": 1.0, "eta_s": 65.0},
    "lens.mine": {"message": "texts", "done": 8, "total": 20, "elapsed_s": 1.0, "eta_s": 12.0},
}


@pytest.mark.asyncio
async def test_steering_and_patchscope_panes_show_steps_and_eta() -> None:
    client = HeldReplay(recording(), PROGRESS)
    app, _ = make_app(client)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause(0.5)
        await pilot.press("r")
        await pilot.pause(0.3)
        assert "steering layer 12: tokens 40/96, ETA 3s" in app.screen.query_one(SteeringPane).steer.status
        assert "40/96 ETA 3s" in plain(app.screen.query_one(PairBar))
        await pilot.press("p")
        await pilot.pause(0.8)
        tokens = app.screen.query_one(TokensPane)
        assert "patchscope at layer 12: scaled vectors read 7/41, ETA 1m05s" in plain(tokens)
        client.gate.set()
        await settle(pilot)
        assert "tokens 40/96" not in app.screen.query_one(SteeringPane).steer.status


@pytest.mark.asyncio
async def test_a_lens_view_shows_its_jobs_steps_and_eta() -> None:
    client = HeldReplay(recording(), PROGRESS)
    app, _ = make_app(client)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause(0.5)
        await pilot.press("M")
        await pilot.pause(0.3)
        mining = app.screen
        assert isinstance(mining, MiningScreen)
        mining.query_one("#corpus", Input).value = "fineweb"
        mining.query_one("#n", Input).value = "20"
        mining.query_one("#corpus", Input).focus()
        await pilot.press("enter")
        await pilot.pause(0.3)
        assert "texts 8/20, ETA 12s" in plain(mining.query_one("#answer", Static))
        client.gate.set()
        await settle(pilot)
