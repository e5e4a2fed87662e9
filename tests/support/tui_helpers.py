"""Driving and reading a Textual app in tests: what a widget paints as plain text, the notifications it raised,
and the diff-mining view asked one question."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console
from textual.pilot import Pilot
from textual.widgets import Input

from tests.support.engine_helpers import until
from tui.app import DiffLensApp
from tui.screens.mining import MiningScreen


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
