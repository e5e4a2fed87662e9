"""Layout regressions: the workbench's main screen at 80×24 and 160×48, painted from a recorded session.

The recording (tests/data/workbench_recording.json) feeds a `ReplayClient`, so every run paints the same
screen. After an intended layout change: `pytest tests/tui/test_tui_snapshots.py --snapshot-update`, then look
at the new SVGs under tests/tui/__snapshots__/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tui.app import DiffLensApp
from tui.sessions.replay import ReplayClient
from tui.state import Start

RECORDING = Path(__file__).resolve().parents[1] / "data" / "workbench_recording.json"
RUN = "3f9c2a71e0b4d5c6"


def recorded_app() -> DiffLensApp:
    async def factory() -> ReplayClient:
        return ReplayClient.from_file(RECORDING)

    return DiffLensApp(client_factory=factory, start=Start(run=RUN))


def pressing(*keys: str) -> Any:
    """A `run_before` that lets the recorded answers land, presses `keys`, and waits for their work."""

    async def run_before(pilot: Any) -> None:
        await pilot.pause()
        await pilot.app.workers.wait_for_complete()
        for key in keys:
            await pilot.press(key)
            await pilot.pause()
            await pilot.app.workers.wait_for_complete()
        await pilot.pause()

    return run_before


def test_main_screen_80x24(snap_compare: Any) -> None:
    """Small terminal: heatmap window around the cursor, tokens beside it, steering below."""
    assert snap_compare(recorded_app(), terminal_size=(80, 24), run_before=pressing("r"))


def test_main_screen_160x48(snap_compare: Any) -> None:
    """Large terminal: every layer, logit lens | Patchscope, steering and the agent side by side."""
    assert snap_compare(recorded_app(), terminal_size=(160, 48), run_before=pressing("r", "p", "g"))


def test_main_screen_160x48_idle_agent(snap_compare: Any) -> None:
    """Large terminal before the agent runs: its idle pane stays narrow, steering keeps the width."""
    assert snap_compare(recorded_app(), terminal_size=(160, 48), run_before=pressing("r"))
