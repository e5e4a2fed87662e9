"""Driving and reading a Textual app in tests: the app over a replay of the recorded workbench session, what a
widget paints as plain text, the notifications it raised, the diff-mining view asked one question, and a replay
whose jobs are held open until the test lets them end."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from textual.pilot import Pilot
from textual.widgets import Input

from tests.support.engine_helpers import until
from tui.app import DiffLensApp
from tui.screens.mining import MiningScreen
from tui.sessions.replay import Recording, ReplayClient
from tui.state import Start


class HeldReplay(ReplayClient[Recording]):
    """Replays `data`, but holds each job of a method in `held` open until `gate` is set: it first sends that
    method's progress event (if one is given), and records the params of every held job as it starts
    (`started`) and of every one cancelled while held (`cancelled`, e.g. replaced by a newer job)."""

    def __init__(self, data: dict[str, Any], held: dict[str, dict[str, Any] | None]) -> None:
        recording = Recording(data)
        super().__init__(recording, recording.description)
        self.held = held
        self.gate = asyncio.Event()
        self.started: list[dict[str, Any]] = []
        self.cancelled: list[dict[str, Any]] = []

    async def run_job(self, method: str, params: dict[str, Any] | None = None,
                      on_event: Any = None) -> dict[str, Any]:
        if method in self.held:
            self.started.append(params or {})
            if (event := self.held[method]) is not None and on_event is not None:
                on_event({"job": "j1", "type": "progress", **event})
            try:
                await self.gate.wait()
            except asyncio.CancelledError:
                self.cancelled.append(params or {})
                raise
        return await super().run_job(method, params, on_event)


def plain(widget: Any, width: int = 160) -> str:
    """What a widget paints, as plain text (a Static's own renderable, else what the widget renders)."""
    console = Console(width=width, record=True, color_system=None, file=io.StringIO())
    content = getattr(widget, "content", None)
    console.print(content if content is not None else widget.render())
    return console.export_text()


def record_notifications(app: DiffLensApp) -> list[tuple[str, dict[str, Any]]]:
    """Every `app.notify(message, **kwargs)` from now on, in order."""
    seen: list[tuple[str, dict[str, Any]]] = []
    original = app.notify

    def notify(message: str, **kwargs: Any) -> None:
        seen.append((message, kwargs))
        original(message, **kwargs)

    app.notify = notify  # type: ignore[method-assign]
    return seen


async def mine_in_view(app: DiffLensApp, pilot: Pilot[Any], corpus: str, n: int) -> MiningScreen:
    """Open the workbench's `M` view, mine `n` texts of `corpus`, and wait for the answer."""
    await pilot.press("M")
    await until(lambda: isinstance(app.screen, MiningScreen), 10, "the mining view")
    mining = app.screen
    assert isinstance(mining, MiningScreen)
    mining.query_one("#corpus", Input).value = corpus
    mining.query_one("#n", Input).value = str(n)
    mining.query_one("#corpus", Input).focus()
    await pilot.press("enter")
    await until(lambda: mining.result is not None, 120, "the mined tokens")
    return mining


RECORDING = Path(__file__).resolve().parents[1] / "data" / "workbench_recording.json"
RUN = "3f9c2a71e0b4d5c6"  # the recorded run


def recording() -> dict[str, Any]:
    """The recorded workbench session (a fresh copy each call: tests edit it)."""
    return json.loads(RECORDING.read_text(encoding="utf-8"))


def make_app(client: ReplayClient, start: Start | None = None) -> tuple[DiffLensApp, list[int]]:
    """An app over `client`; the list counts how often the app asked for a client (reconnects)."""
    made: list[int] = []

    async def factory() -> ReplayClient:
        made.append(1)
        return client

    return DiffLensApp(client_factory=factory, start=start if start is not None else Start(run=RUN)), made


async def settle(pilot: Any) -> None:
    """Until the app's workers are done and what they posted has been handled."""
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
