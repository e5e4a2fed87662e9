"""The triage board in the terminal: one row per pair, ranked by significance against its null."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from tui.render.significance import board_verdict


def board_view(result: dict[str, Any]) -> Group:
    """Pairs by significance against their null, with the hypothesis (or the verdict) or the error; how many pairs
    were cached and how many model loads the plan needed."""
    table = Table("#", "pair", "base → finetuned", "vs null", "score", "hypothesis / error", "run",
                  title=f"triage board: {result.get('name', 'pairs')}", title_justify="left", show_lines=True)
    for rank, pair in enumerate(result["pairs"], start=1):
        ft = pair["ft"] + (f" + {Path(pair['adapter']).name}" if pair.get("adapter") else "")
        pairing = Text(f"{pair['base']} → {ft}")
        if pair.get("corpus"):
            pairing.append(f"\nread on {pair['corpus']}", style="dim")
        if pair.get("error"):
            table.add_row(str(rank), pair["name"], pairing, "—", "—", Text(pair["error"], style="red"), "")
            continue
        note = Text(pair.get("hypothesis") or "")
        if pair.get("skipped"):
            note.append("  (cached)", style="dim")
        table.add_row(str(rank), Text(pair["name"], style="bold"), pairing, board_verdict(pair), f"{pair['score']:.3f}",
                      note, str(pair.get("run") or "")[:12])
    plan = result.get("plan") or {}
    return Group(table,
                 Text(f"{len(result['pairs'])} pairs, {result.get('skipped', 0)} already finished, "
                      f"{plan.get('model_loads', '?')} model loads planned", style="dim"),
                 Text(result.get("score_definition", ""), style="dim"))
