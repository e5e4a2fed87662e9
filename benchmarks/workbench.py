"""The workbench opened on a cached run (`difflens tui --run RUN`), to first paint, in a fresh process.

Marks, from the app's start (`run_test`, headless, 120×40, a private engine child): the workbench mounted
(`first_paint_s`) and its heatmap painted with the run's data (`data_paint_s`); `import_s` is the imports
of `tui.app` before that. `torch_loaded` says whether this (the TUI) process imported torch.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from benchmarks.replay import paint_marks

TIMEOUT_S = 120.0


async def _paint(run: str) -> dict[str, float]:
    from tui.app import DiffLensApp
    from tui.client import connect
    from tui.screens.workbench import WorkbenchScreen
    from tui.state import Start

    app = DiffLensApp(client_factory=lambda: connect(None), start=Start(run=run))
    return await paint_marks(app, WorkbenchScreen, TIMEOUT_S)


def cached_paint(run: str) -> dict[str, Any]:
    """Open `run` in the workbench and time its first paints."""
    began = time.perf_counter()
    import tui.app  # noqa: F401  (the import cost is part of what a user waits for)

    imported = time.perf_counter() - began
    marks = asyncio.run(_paint(run))
    return {"import_s": round(imported, 3), **{name: round(value, 3) for name, value in marks.items()},
            "total_s": round(imported + marks.get("data_paint_s", TIMEOUT_S), 3),
            "torch_loaded": "torch" in sys.modules}
