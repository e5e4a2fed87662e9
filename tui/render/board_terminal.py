"""The triage board in the terminal: one row per pair, ranked by significance against its null."""

from __future__ import annotations

from pathlib import Path

from rich.console import Group
from rich.table import Table
from rich.text import Text

from engine.protocol.report_results import TriageBoardResult


def board_view(result: TriageBoardResult) -> Group:
    """Pairs by significance against their null, with the hypothesis (or the verdict) or the error; how many pairs
    were cached and how many model loads the plan needed."""
    table = Table("#", "pair", "base → finetuned", "vs null", "score", "hypothesis / error", "run",
                  title=f"triage board: {result.name or 'pairs'}", title_justify="left", show_lines=True)
    for rank, pair in enumerate(result.pairs, start=1):
        ft = pair.ft + (f" + {Path(pair.adapter).name}" if pair.adapter else "")
        pairing = Text(f"{pair.base} → {ft}")
        if pair.corpus:
            pairing.append(f"\nread on {pair.corpus}", style="dim")
        if pair.error:
            table.add_row(str(rank), pair.name, pairing, "—", "—", Text(pair.error, style="red"), "")
            continue
        note = Text(pair.hypothesis or "")
        if pair.skipped:
            note.append("  (cached)", style="dim")
        score = "—" if pair.score is None else f"{pair.score:.3f}"
        table.add_row(str(rank), Text(pair.name, style="bold"), pairing, pair.verdict(), score, note,
                      (pair.run or "")[:12])
    loads = result.plan.model_loads
    return Group(table,
                 Text(f"{len(result.pairs)} pairs, {result.skipped} already finished, "
                      f"{'?' if loads is None else loads} model loads planned", style="dim"),
                 Text(result.score_definition, style="dim"))
