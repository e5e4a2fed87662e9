"""The layer × position heatmap: where in the network the finetune left its trace; its cursor drives the rest."""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.reactive import reactive
from textual.widget import Widget

from tui.messages import CellSelected
from tui.render.palette import cell_style, fmt_value, legend_bar, step_for
from tui.state import METRIC_LABELS, HeatState

_CURSOR = Style(bold=True, underline=True)
_SCORE_W = 5  # the layer-criterion column: " .58★"
_SPARK_W = 7  # the criterion's sparkline beside it: " ████▌ " (drawn only where the cells keep their values)
_EIGHTHS = " ▏▎▍▌▋▊▉█"


def scale_bounds(heat: HeatState) -> tuple[float, float]:
    """The colour scale: min..max over the grid, position 0 left out unless asked for (it dwarfs the rest)."""
    skip0 = not heat.include_pos0 and heat.k > 1
    values = [v for row in heat.grid for p, v in enumerate(row) if not (skip0 and p == 0) and v == v]
    return (min(values), max(values)) if values else (0.0, 1.0)


class Heatmap(Widget, can_focus=True):
    """Layers down, positions across, colour = the chosen metric; arrow keys move the cursor. A last column
    shows each layer's score under the layer criterion, ★ on the layer the report reads, and a sparkline of the
    scores (bars relative to the best layer's) where the width allows."""

    BINDINGS = [
        Binding("up,k", "move(-1, 0)", "Layer up", show=False),
        Binding("down,j", "move(1, 0)", "Layer down", show=False),
        Binding("left,h", "move(0, -1)", "Position left", show=False),
        Binding("right,l", "move(0, 1)", "Position right", show=False),
    ]

    heat: reactive[HeatState] = reactive(HeatState)

    def action_move(self, d_row: int, d_pos: int) -> None:
        """Ask the screen to move the cursor (it owns the state and refetches the other panes)."""
        self.post_message(CellSelected(d_row, d_pos))

    def watch_heat(self) -> None:
        self.refresh()

    def render(self) -> Text:
        heat = self.heat
        if not heat.layers or not heat.grid:
            return Text(heat.status or "no run open", style="dim")
        width, height = self.content_region.width or 40, self.content_region.height or 20
        lo, hi = scale_bounds(heat)
        label_w = len(f"L{max(heat.layers)}") + 1
        score_w = _SCORE_W if heat.layer_scores else 0
        spark_w = _SPARK_W if score_w and (width - label_w - score_w - _SPARK_W) // max(1, heat.k) >= 5 else 0
        cell_w = max(3, min(9, (width - label_w - score_w - spark_w) // max(1, heat.k)))
        show_values = cell_w >= 5
        legend = self._legend(heat, lo, hi, width, two_lines=height >= 8)
        avail = max(1, height - 1 - len(legend.split("\n")) - (1 if heat.significance is not None else 0))
        n = len(heat.layers)
        start = max(0, min(heat.row - avail // 2, n - avail))
        stop = min(n, start + avail)

        out = Text(no_wrap=True, overflow="crop")
        out.append(("↕" if stop - start < n else " ").ljust(label_w), style="dim")
        for p in range(heat.k):
            out.append(f"p{p}".center(cell_w), style="bold reverse" if p == heat.pos else "bold")
        if score_w:
            out.append("crit".rjust(score_w), style="bold")
        for row in range(start, stop):
            out.append("\n")
            out.append(f"L{heat.layers[row]}".rjust(label_w - 1) + " ",
                       style="bold reverse" if row == heat.row else "dim")
            for p, value in enumerate(heat.grid[row]):
                out.append_text(self._cell(value, lo, hi, cell_w, show_values, cursor=(row, p) == (heat.row, heat.pos)))
            if score_w:
                out.append_text(self._score(heat, row, score_w))
            if spark_w:
                out.append_text(self._spark(heat, row, spark_w))
        out.append("\n")
        out.append_text(legend)
        if heat.significance is not None:
            readable = heat.significance.readable is not False
            out.append("\nvs null: " + heat.significance.short(), style="dim" if readable else "bold yellow")
        return out

    @staticmethod
    def _cell(value: float, lo: float, hi: float, width: int, show_values: bool, *, cursor: bool) -> Text:
        style = cell_style(step_for(value, lo, hi), bold=cursor)
        above = value > hi * 1.0001 and hi > lo
        if show_values:
            body = fmt_value(value) + ("▲" if above else "")
            body = f"[{body}]" if cursor else body
        else:
            body = "◆" if cursor else ("▲" if above else "")
        text = Text(body.center(width)[:width], style=style)
        if cursor:
            text.stylize(_CURSOR)
        return text

    @staticmethod
    def _score(heat: HeatState, row: int, width: int) -> Text:
        """One layer's criterion score, ★ where the report layer is."""
        score = heat.layer_scores[row]
        chosen = heat.layers[row] == heat.chosen_layer
        body = ("—" if score is None else f"{score:.2f}".removeprefix("0")) + ("★" if chosen else " ")
        return Text(body.rjust(width), style="bold" if chosen else "dim")

    @staticmethod
    def _spark(heat: HeatState, row: int, width: int) -> Text:
        """One layer's criterion score as a bar in eighths of a cell, the best layer's filling `width - 2`."""
        best = max((s for s in heat.layer_scores if s is not None), default=0.0) or 1.0
        eighths = round(8 * (width - 2) * max(0.0, heat.layer_scores[row] or 0.0) / best)
        bar = "█" * (eighths // 8) + (_EIGHTHS[eighths % 8] if eighths % 8 else "")
        chosen = heat.layers[row] == heat.chosen_layer
        return Text(" " + bar.ljust(width - 1), style="bold cyan" if chosen else "cyan")

    @staticmethod
    def _legend(heat: HeatState, lo: float, hi: float, width: int, *, two_lines: bool) -> Text:
        label = METRIC_LABELS.get(heat.metric, heat.metric)
        lo_s, hi_s = fmt_value(lo), fmt_value(hi)
        bar_w = max(4, min(24, width - len(lo_s) - len(hi_s) - 4))
        line = Text(no_wrap=True, overflow="crop")
        line.append(f"{lo_s} ")
        line.append_text(legend_bar(bar_w))
        line.append(f" {hi_s}")
        value = heat.grid[heat.row][heat.pos]
        note = Text(no_wrap=True, overflow="crop")
        note.append(f"{label} ", style="bold")
        note.append(f"L{heat.layer} p{heat.pos} = {fmt_value(value)}")
        if not heat.include_pos0 and heat.k > 1:
            note.append("  p0 off scale (0 adds it)", style="dim")
        if not two_lines or width >= len(line) + len(note) + 2:
            return line + Text("  ") + note
        return line + Text("\n") + note
