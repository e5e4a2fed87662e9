"""The README's picture of the workbench: `python -m tui.cli.screenshot` (then commit docs/images/workbench.svg).

Opens the shipped session (sessions/demo.difflens) in the real workbench, headless and with no engine, waits until
it paints the same frame twice in a row, and writes Textual's SVG export of that frame. The export is a pure
function of the frame (Rich names its CSS classes by a hash of the content), so the same session and code give
the same file: `tests/tui/test_screenshot.py` regenerates it and compares.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from store.atomic import write_text_atomic
from tui.cli.replay import replay_app

ROOT = Path(__file__).resolve().parents[2]
SESSION = ROOT / "sessions" / "demo.difflens"
OUTPUT = ROOT / "docs" / "images" / "workbench.svg"
SIZE = (140, 42)
TITLE = "difflens replay sessions/demo.difflens"


async def screenshot(session: Path = SESSION, size: tuple[int, int] = SIZE, steady_tries: int = 40) -> str:
    """The workbench on `session`, settled, as an SVG document."""
    app = replay_app(str(session))
    async with app.run_test(size=size) as pilot:
        for _ in range(3):
            await pilot.pause()
            await app.workers.wait_for_complete()
        previous = app.export_screenshot(title=TITLE)
        for _ in range(steady_tries):
            await pilot.pause(0.05)
            now = app.export_screenshot(title=TITLE)
            if now == previous:
                return now
            previous = now
        raise RuntimeError(f"the workbench on {session} did not settle after {steady_tries} frames")


def main(session: Annotated[Path, typer.Option("--session", help="The session file to open.")] = SESSION,
         output: Annotated[Path, typer.Option("--output", help="The SVG file to write.")] = OUTPUT) -> None:
    """Write the README's picture of the workbench on the shipped session."""
    output.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(output, asyncio.run(screenshot(session)))
    print(output)


if __name__ == "__main__":
    typer.run(main)
