"""Child processes of the session tests: replay a session with torch blocked, or record until killed.

`python -m tests.support.session_child replay REF` prints the workbench panes (as JSON) after a replay of REF, with
torch, transformers and nnsight made unimportable before anything else is imported.
`python -m tests.support.session_child record NAME` records into session NAME over the test recording, printing
`DONE <action id>` once each action is committed, and keeps moving the cursor until it is killed.
"""

from __future__ import annotations

import asyncio
import importlib.abc
import io
import json
import sys
from pathlib import Path
from typing import Any

BLOCKED = ("torch", "transformers", "nnsight")
SIZE = (120, 40)
RECORDING = Path(__file__).resolve().parents[1] / "data" / "workbench_recording.json"
RUN = "3f9c2a71e0b4d5c6"


class Blocker(importlib.abc.MetaPathFinder):
    """Makes the heavy libraries unimportable: replay must not need them."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked in this test")
        return None


def dump(app: Any) -> dict[str, Any]:
    """What the workbench shows: each pane's painted text and the model behind it."""
    from rich.console import Console

    from tui.widgets.agent import AgentPane
    from tui.widgets.heatmap import Heatmap
    from tui.widgets.steering import SteeringPane
    from tui.widgets.tokens import TokensPane

    screen = app.screen
    texts = {}
    for name, kind in (("heatmap", Heatmap), ("tokens", TokensPane), ("steering", SteeringPane),
                       ("agent", AgentPane)):
        console = Console(width=160, record=True, color_system=None, file=io.StringIO())
        console.print(screen.query_one(kind).render())
        texts[name] = console.export_text()
    m = screen.model
    return {"texts": texts, "model": {part: repr(getattr(m, part)) for part in ("pair", "heat", "tokens", "steer",
                                                                                 "agent")}}


async def settle(app: Any, pilot: Any, rounds: int = 3, steady_tries: int = 20) -> None:
    """Until the workers are done and the workbench paints the same twice in a row: a layout pass (a pane's width
    after a class change) can land a frame after the last worker, and a loaded machine makes that frame late."""
    for _ in range(rounds):
        await pilot.pause()
        await app.workers.wait_for_complete()
    await pilot.pause()
    previous = _painted(app)
    for _ in range(steady_tries):
        await pilot.pause(0.05)
        if (now := _painted(app)) == previous:
            return
        previous = now


def _painted(app: Any) -> dict[str, Any] | None:
    """`dump(app)`, or None on a screen without the workbench's panes."""
    from textual.css.query import NoMatches

    try:
        return dump(app)
    except NoMatches:
        return None


async def replay(ref: str) -> None:
    from tui.cli.replay import replay_app

    app = replay_app(ref)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        out = dump(app)
        out["torch_loaded"] = [m for m in sys.modules if m.split(".")[0] in BLOCKED]
        out["description"] = app.link.client.description if app.link.client else ""
    print("DUMP " + json.dumps(out), flush=True)


async def record(name: str) -> None:
    from tui.app import DiffLensApp
    from tui.sessions.replay import ReplayClient
    from tui.state import Start

    async def factory() -> ReplayClient:
        return ReplayClient.from_file(RECORDING, event_delay_s=0.01)

    app = DiffLensApp(client_factory=factory, start=Start(run=RUN), session=name)
    assert app.sessions.recorder is not None
    app.sessions.recorder.on_done = lambda action_id: print(f"DONE {action_id}", flush=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        while True:
            for key in ("up", "down", "s", "r"):
                await pilot.press(key)
                await asyncio.sleep(0.02)


def main() -> None:
    command, ref = sys.argv[1], sys.argv[2]
    if command == "replay":
        sys.meta_path.insert(0, Blocker())
        asyncio.run(replay(ref))
    else:
        asyncio.run(record(ref))


if __name__ == "__main__":
    main()
