"""`?`: every key the screen underneath answers to, with what it does."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static


def bindings_table(screen: Screen[Any]) -> Table:
    """Key → action for the screen's active bindings (its focused pane, the screen, the app)."""
    table = Table(box=None, padding=(0, 2), show_header=False)
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column()
    seen: set[str] = set()
    # the screen's own keys first, then the app's, then the focused widget's (cursor movement and the like)
    order = sorted(screen.active_bindings.values(),
                   key=lambda a: 0 if a.node is screen else 1 if a.node is screen.app else 2)
    for active in order:
        binding = active.binding
        if not binding.description or binding.description in seen or binding.system:
            continue
        seen.add(binding.description)
        keys = ", ".join(screen.app.get_key_display(Binding(k, binding.action)) for k in binding.key.split(","))
        table.add_row(binding.key_display or keys, binding.description)
    return table


class KeysScreen(ModalScreen[None]):
    """A modal listing of the key bindings; any of escape, ? or q closes it."""

    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close")]

    def __init__(self, under: Screen[Any]) -> None:
        super().__init__()
        self._under = under

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="keys"):
            yield Static("[b]Keys[/b]  (escape closes)", id="keys-title")
            yield Static(bindings_table(self._under))
