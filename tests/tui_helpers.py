"""Reading a Textual app in tests: what a widget paints as plain text, and the notifications it raised."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from tui.app import DiffLensApp


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
