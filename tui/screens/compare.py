"""Old and new answers side by side after `difflens replay SESSION --rerun`: one row per question."""

from __future__ import annotations

from rich.table import Table
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Footer, Static

from tui.sessions.compare import describe_call, summarize
from tui.sessions.rerun import Step


def compare_table(steps: list[Step], old_label: str, new_label: str) -> Table:
    """A Rich table: question | old answer | new answer (also printed by `--print`)."""
    table = Table(expand=True, show_lines=True)
    table.add_column("question", ratio=1, style="bold")
    table.add_column(old_label, ratio=2)
    table.add_column(new_label, ratio=2)
    for step in steps:
        table.add_row(describe_call(step.method, step.params), summarize(step.method, step.old),
                      summarize(step.method, step.new, step.error))
    return table


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
