"""Steering: prompts, α (where it came from marked) and layer; steered vs unsteered text side by side, streaming."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.binding import Binding
from textual.reactive import reactive
from textual.widget import Widget

from tui.messages import PromptSelected
from tui.state import SteerRow, SteerState


def alpha_line(steer: SteerState) -> Text:
    """`L9 p2  α 0.125  calibrated ◆` — says where α came from: calibrated (◆), the cell's norm ratio while
    calibration is pending, or typed/stepped by the user (then the calibrated value is shown beside it)."""
    line = Text(no_wrap=True, overflow="ellipsis")
    where = "L?" if steer.layer is None else f"L{steer.layer} p{steer.pos}"
    line.append(where, style="bold")
    line.append("  α ", style="bold")
    at_calibrated = steer.calibrated is not None and abs(steer.alpha - steer.calibrated) < 1e-9
    line.append(f"{steer.alpha:.4g}", style="bold green" if at_calibrated else "bold")
    if at_calibrated:
        line.append("  calibrated ◆", style="green")
    elif steer.calibrated is not None:
        line.append(f"  (calibrated {steer.calibrated:.4g}: =)", style="dim")
    elif steer.alpha_from == "norm":
        line.append("  (‖Δ‖/‖base‖ until calibrated)", style="dim")
    else:
        line.append("  (not calibrated: c)", style="dim")
    if steer.status:
        line.append(f"  · {steer.status}", style="dim")
    return line


PROMPT_MIN = 16


class SteeringPane(Widget, can_focus=True):
    """Up/down pick a prompt (to edit); the samples table shows each prompt steered and unsteered."""

    BINDINGS = [
        Binding("up", "pick(-1)", "Prompt up", show=False),
        Binding("down", "pick(1)", "Prompt down", show=False),
    ]

    steer: reactive[SteerState] = reactive(SteerState)

    def action_pick(self, delta: int) -> None:
        self.post_message(PromptSelected(delta))

    def watch_steer(self) -> None:
        self.refresh(layout=True)

    def render(self) -> RenderableType:
        steer = self.steer
        table = Table(expand=True, box=None, padding=(0, 1), show_edge=False, header_style="bold")
        rows = steer.rows or tuple(SteerRow(prompt=p) for p in steer.prompts)
        # prompts are short: as wide as the longest (up to a third of the pane), the samples share the rest
        widest = max((len(row.prompt) + 2 for row in rows), default=PROMPT_MIN)
        table.add_column("prompt", width=max(PROMPT_MIN, min(widest, self.size.width // 3)), overflow="fold")
        table.add_column("steered", ratio=1, overflow="fold")
        table.add_column("unsteered", ratio=1, overflow="fold")
        for i, row in enumerate(rows):
            mark = "▸ " if i == steer.selected else "  "
            cursor = "▌" if steer.streaming else ""
            table.add_row(Text(mark + row.prompt, style="bold" if i == steer.selected else ""),
                          Text(row.steered + (cursor if steer.streaming and row.steered else ""), style="green"),
                          Text(row.unsteered, style="dim" if not row.unsteered else ""))
        if not rows:
            table.add_row(Text("engine default prompts (n: add one)", style="dim"), "", "")
        return Group(alpha_line(steer), table)

