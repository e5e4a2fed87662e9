"""`difflens triage --pairs FILE`: the ranked board in the terminal, as JSON, or as static HTML pages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from engine.protocol import methods
from engine.protocol.methods import TRIAGE_SETTINGS
from engine.protocol.report_results import TriageBoardResult, TriageReport
from tui.cli.engine_call import call_engine, typed
from tui.cli.output import emit_json, err, fail, out
from tui.render.board_terminal import board_view
from tui.render.report_html import write_report

# triage settings whose flag is named otherwise (`--no-steer` sets steer, `--prompts` n_prompts)
FLAG_OF = {"steer": "no_steer", "n_prompts": "prompts"}
HUB = "hub:"  # `--pairs hub:BASE_ID[?TEXT]` is resolved by the engine, not read as a path


def typed_settings(ctx: typer.Context, settings: dict[str, Any]) -> dict[str, Any]:
    """Of the triage settings the flags give, those the user typed: a board's file and the engine's defaults fill
    the rest."""
    def typed(flag: str) -> bool:
        source = ctx.get_parameter_source(flag)
        return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")

    return {name: settings[name] for name in TRIAGE_SETTINGS if name in settings and typed(FLAG_OF.get(name, name))}


def without_reports(result: TriageBoardResult) -> dict[str, Any]:
    """The board as `--json` prints it: every pair's outcome as the engine sent it, no full reports."""
    pairs = [{k: v for k, v in p.to_json().items() if k != "report"} for p in result.pairs]
    return {**result.to_json(), "pairs": pairs}


def write_html(directory: Path, result: TriageBoardResult) -> None:
    """Write the HTML pages (index + one per pair) and say where."""
    if directory.exists() and not directory.is_dir():
        fail(f"--html {directory} is a file — pass a directory")
    index = write_report(directory, result)
    err.print(f"HTML report: {index}", highlight=False, soft_wrap=True)  # a message: stdout may be --json


def run_board(pairs: str, params: dict[str, Any], *, json: bool, html: Path | None, target: str | None) -> None:
    """Triage every pair of the file (or of a `hub:` query) through the engine, then print or write the board;
    `params`: the board's params beside its pairs (`settings`, `llm`, `limit`, …)."""
    source = pairs if pairs.startswith(HUB) else str(Path(pairs).expanduser().resolve())
    result = call_engine(methods.TRIAGE_BOARD,
                         typed(methods.TRIAGE_BOARD, {**params, "pairs": source, "reports": html is not None}),
                         title="triage board", target=target)
    if html is not None:
        write_html(html, result)
    if json:
        emit_json(without_reports(result))
    else:
        out.print(board_view(result))


def single_pair_board(pair: methods.TriagePair, llm: str | None, html: Path, target: str | None) -> TriageReport:
    """One pair through the board (score + hypothesis), its HTML written; returns its report."""
    named = pair.adapter or pair.ft
    name = Path(named).name or named
    row = {"name": name, "base": pair.base, "ft": pair.ft, "adapter": pair.adapter}
    settings: dict[str, object] = {k: v for k, v in pair.to_json().items() if k in TRIAGE_SETTINGS}
    result = call_engine(methods.TRIAGE_BOARD, methods.TriageBoard(
        pairs=[row], name=name, reports=True, settings=settings, llm=llm), title="triage", target=target)
    entry = result.pairs[0]
    if entry.error:
        fail(entry.error)
    if entry.report is None:
        fail(f"the engine kept no report for {entry.name} — run the triage again")
    write_html(html, result)
    return entry.report
