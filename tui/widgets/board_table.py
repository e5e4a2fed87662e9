"""The start screen's triage board: the latest board's pairs by trace strength; a row's key is its run
(`run#i` when two pairs share one run, `failed:name` for a pair that failed)."""

from __future__ import annotations

from typing import Any

from rich.text import Text

from tui.render.significance import board_verdict
from tui.widgets.plain_table import PlainTable


class BoardTable(PlainTable):
    """Pairs of the latest `difflens triage --pairs` board (from `triage.boards`); Enter opens a pair's run."""

    def on_mount(self) -> None:
        self.add_columns("pair", "vs null", "score", "hypothesis / error", "base → finetuned")

    def show(self, board: dict[str, Any] | None) -> None:
        """Fill the table from a `triage.boards` answer (`None`: no board yet)."""
        self.clear()
        seen: set[str] = set()
        for index, pair in enumerate((board or {}).get("pairs", [])):
            ft = pair.get("ft", "") + (" + adapter" if pair.get("adapter") else "")
            if pair.get("error"):
                note, score, verdict = Text(pair["error"], style="red"), "—", "—"
            else:
                note, score = Text(pair.get("hypothesis") or ""), f"{pair.get('score') or 0:.3f}"
                verdict = board_verdict(pair)
            key = pair.get("run") or f"failed:{pair['name']}"
            key = f"{key}#{index}" if key in seen else key  # two names for one run: `#` keeps keys unique
            seen.add(key)
            self.add_row(Text(pair["name"], style="bold"), verdict, score, note, f"{pair.get('base', '')} → {ft}",
                         key=key)
        if not board or not board.get("pairs"):
            self.add_row(Text("no triage board yet: difflens triage --pairs pairs.yaml", style="dim"), "", "", "",
                         "", key="")
