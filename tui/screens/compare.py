"""Old and new answers side by side after `difflens replay SESSION --rerun`: one row per question."""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Footer, Static

from tui.sessions.compare import compare_table
from tui.sessions.rerun import Step


class CompareApp(App[None]):
    """A scrollable side-by-side view; q quits."""

    TITLE = "difflens rerun"
    BINDINGS = [Binding("q", "quit", "Quit")]

    def __init__(self, steps: list[Step], old_label: str, new_label: str) -> None:
        super().__init__()
        self._table = compare_table(steps, old_label, new_label)

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(self._table, id="compare")
        yield Footer()
