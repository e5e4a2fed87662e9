"""The start screen's triage board: the latest board's pairs by trace strength; a row's key is its run
(`run#i` when two pairs share one run, `failed:name` for a pair that failed)."""

from __future__ import annotations

from rich.text import Text

from engine.protocol.report_results import TriageBoardResult
from tui.widgets.plain_table import PlainTable


class BoardTable(PlainTable):
    """Pairs of the latest `difflens triage --pairs` board (from `triage.boards`); Enter opens a pair's run."""

    def on_mount(self) -> None:
        self.add_columns("pair", "vs null", "score", "hypothesis / error", "base → finetuned")

    def show(self, board: TriageBoardResult | None) -> None:
        """Fill the table from a `triage.boards` answer (`None`: no board yet)."""
        self.clear()
        seen: set[str] = set()
        pairs = board.pairs if board is not None else []
        for index, pair in enumerate(pairs):
            ft = pair.ft + (" + adapter" if pair.adapter else "")
            if pair.error:
                note, score, verdict = Text(pair.error, style="red"), "—", "—"
            else:
                note, score, verdict = Text(pair.hypothesis or ""), f"{pair.score or 0:.3f}", pair.verdict()
            key = pair.run or f"failed:{pair.name}"
            key = f"{key}#{index}" if key in seen else key  # two names for one run: `#` keeps keys unique
            seen.add(key)
            self.add_row(Text(pair.name, style="bold"), verdict, score, note, f"{pair.base} → {ft}", key=key)
        if not pairs:
            self.add_row(Text("no triage board yet: difflens triage --pairs pairs.yaml", style="dim"), "", "", "",
                         "", key="")
