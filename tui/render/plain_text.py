"""Text from outside (files, bundles, models, the engine) printed as text: never as markup, never as escapes.

Names, pairs, hub ids, prompts and model output reach the terminal from places we do not control. Rich would read
`[/x]` in them as markup (and stop with a traceback), and the terminal would obey the escapes in them (OSC 52
writes the clipboard, `ESC[2J` clears the screen, U+202E reverses what follows). So the CLI's consoles parse no
markup in strings at all (our own styles are `Text` objects) and every segment they write is cleaned here, the one
place text from outside enters Rich's output; the TUI's tables and notifications take it through `plain`.
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Console, ConsoleOptions, RenderableType
from rich.segment import Segment
from rich.text import Text

from store.printable import UNSAFE

REPLACEMENT = "\N{REPLACEMENT CHARACTER}"


def printable(text: str) -> str:
    """`text` with every character that is not plain text (`UNSAFE`) shown as U+FFFD."""
    return UNSAFE.sub(REPLACEMENT, text)


def plain(value: object, style: str = "") -> Text:
    """Any value from outside as a Rich `Text`: its characters shown as they are, `[` included, escapes replaced.
    A `Text` keeps its styles (`printable` replaces one character by one, so every span still fits)."""
    if isinstance(value, Text):
        cleaned = value.copy()
        cleaned.plain = printable(value.plain)
        return cleaned
    return Text(printable(str(value)), style=style)


class PlainConsole(Console):
    """A Console that reads no markup or emoji codes in strings and cleans every text segment it writes (its own
    cursor controls for progress bars stay: those are `control` segments)."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(markup=False, emoji=False, **kwargs)  # type: ignore[arg-type]

    def render(self, renderable: RenderableType, options: ConsoleOptions | None = None) -> Iterable[Segment]:
        for segment in super().render(renderable, options):
            yield segment if segment.control else Segment(printable(segment.text), segment.style)
