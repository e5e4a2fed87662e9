"""`difflens replay` to first paint, run in a fresh torch-free process (as the command runs).

Marks, from the app's start (`run_test`, headless, 120×40): the session's workbench mounted and refreshed
(`first_paint_s`), then the recorded run's heatmap painted with data (`data_paint_s`). `import_s` is the
imports of `tui.cli.replay` before that, `torch_loaded` proves replay stayed torch-free.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

DEMO_SESSION = Path(__file__).resolve().parent.parent / "sessions" / "demo.difflens"
TIMEOUT_S = 60.0


async def paint_marks(app: Any, screen_type: type[Any], timeout_s: float) -> dict[str, float]:
    """Seconds from the app's start until a `screen_type` screen is mounted (`first_paint_s`) and its heatmap
    holds data (`data_paint_s`); the replay and the cached-run workbench are timed alike."""
    from tui.widgets.heatmap import Heatmap

    marks: dict[str, float] = {}
    start = time.perf_counter()
    async with app.run_test(size=(120, 40)) as pilot:
        while time.perf_counter() - start < timeout_s:
            screen = app.screen
            if "first_paint_s" not in marks and isinstance(screen, screen_type) and screen.is_mounted:
                await pilot.pause()
                marks["first_paint_s"] = time.perf_counter() - start
            if "first_paint_s" in marks and screen.query(Heatmap) and screen.query_one(Heatmap).heat.grid:
                await pilot.pause()
                marks["data_paint_s"] = time.perf_counter() - start
                break
            await pilot.pause(0.005)
        await app.action_quit()
    return marks


async def _paint(session: Path) -> dict[str, float]:
    from tui.cli.replay import replay_app
    from tui.screens.session import SessionWorkbench

    return await paint_marks(replay_app(str(session)), SessionWorkbench, TIMEOUT_S)


def first_paint(session: str | None = None) -> dict[str, Any]:
    """Open the session (default: the shipped demo) and time its first paints."""
    began = time.perf_counter()
    import tui.cli.replay  # noqa: F401  (the import cost is part of what a user waits for)

    imported = time.perf_counter() - began
    marks = asyncio.run(_paint(Path(session) if session else DEMO_SESSION))
    return {"session": Path(session).name if session else DEMO_SESSION.name, "import_s": round(imported, 3),
            **{name: round(value, 3) for name, value in marks.items()},
            "torch_loaded": "torch" in sys.modules}
