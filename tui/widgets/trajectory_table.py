"""The start screen's trajectory: the latest `difflens trajectory`'s steps, one row each; Enter opens a step's
run in the workbench (the steps' runs stay out of the cached-runs list). Hidden until a trajectory is stored."""

from __future__ import annotations

from rich.text import Text

from engine.protocol.report_results import TrajectoryResult
from tui.render.trajectory_view import cells
from tui.widgets.plain_table import PlainTable


class TrajectoryTable(PlainTable):
    """Steps of the latest trajectory (from `trajectory.list`), readable steps in bold."""

    def on_mount(self) -> None:
        self.add_columns("step", "vs null", "z", "layer", "headline tokens")

    def show(self, latest: TrajectoryResult | None) -> None:
        """Fill the table from a `trajectory.list` answer's `latest` (`None`: none stored, the table hides)."""
        self.clear()
        for row in latest.steps if latest is not None else []:
            c = cells(row)
            self.add_row(Text(c.label, style="bold" if row.readable else ""), c.verdict, c.z, c.layer, c.tokens,
                         key=row.run)
