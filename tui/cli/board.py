"""`difflens triage --pairs FILE`: the ranked board in the terminal, as JSON, or as static HTML pages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table
from rich.text import Text

from engine.protocol import methods
from tui.cli.engine_call import call_engine, typed
from tui.cli.options import parse_layers
from tui.cli.output import emit_json, err, fail, out
from tui.render.report_html import write_report
from tui.render.significance import board_verdict

# CLI option → op param (only options the user typed are sent: the pairs file's settings fill the rest)
BOARD_OPTIONS = {"corpus": "corpus", "n": "n", "k": "k", "seed": "seed", "layers": "layers", "device": "device",
                 "dtype": "dtype", "batch_size": "batch_size", "trust_remote_code": "trust_remote_code",
                 "sequential": "sequential", "layer": "layer", "description": "description", "no_steer": "steer",
                 "prompts": "n_prompts", "llm": "llm", "judge": "judge", "protocol": "protocol", "limit": "limit",
                 "devices": "devices", "ray": "ray", "null": "null"}
HUB = "hub:"  # `--pairs hub:BASE_ID[?TEXT]` is resolved by the engine, not read as a path


def typed_params(ctx: typer.Context, values: dict[str, Any]) -> dict[str, Any]:
    """The board settings the user gave on the command line (defaults left to the file and the engine)."""
    params: dict[str, Any] = {}
    for option, name in BOARD_OPTIONS.items():
        source = ctx.get_parameter_source(option)
        if source is None or source.name in ("DEFAULT", "DEFAULT_MAP"):
            continue
        value = values[option]
        params[name] = (not value) if option == "no_steer" else parse_layers(value) if option == "layers" else value
    return params


def without_reports(result: dict[str, Any]) -> dict[str, Any]:
    """The board as `--json` prints it: every pair's outcome, no full reports."""
    return {**result, "pairs": [{k: v for k, v in p.items() if k != "report"} for p in result["pairs"]]}


def render_board(result: dict[str, Any]) -> None:
    """Pairs by significance against their null, with the hypothesis (or the verdict) or the error."""
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
                      note,
                      str(pair.get("run") or "")[:12])
    out.print(table)
    plan = result.get("plan") or {}
    out.print(Text(f"{len(result['pairs'])} pairs, {result.get('skipped', 0)} already finished, "
                   f"{plan.get('model_loads', '?')} model loads planned", style="dim"))
    out.print(Text(result.get("score_definition", ""), style="dim"))


def write_html(directory: Path, result: dict[str, Any]) -> None:
    """Write the HTML pages (index + one per pair) and say where."""
    if directory.exists() and not directory.is_dir():
        fail(f"--html {directory} is a file — pass a directory")
    index = write_report(directory, result)
    err.print(f"HTML report: {index}", highlight=False, soft_wrap=True)  # a message: stdout may be --json


def run_board(pairs: str, params: dict[str, Any], *, json: bool, html: Path | None, target: str | None) -> None:
    """Triage every pair of the file (or of a `hub:` query) through the engine, then print or write the board."""
    source = pairs if pairs.startswith(HUB) else str(Path(pairs).expanduser().resolve())
    result = call_engine(methods.TRIAGE_BOARD,
                         typed(methods.TRIAGE_BOARD, {**params, "pairs": source, "reports": html is not None}),
                         title="triage board", target=target)
    board = result.to_json()
    if html is not None:
        write_html(html, board)
    if json:
        emit_json(without_reports(board))
    else:
        render_board(board)


def single_pair_board(params: dict[str, Any], html: Path, target: str | None) -> dict[str, Any]:
    """One pair through the board (score + hypothesis), its HTML written; returns its report."""
    named = params.get("adapter") or params["ft"]
    pair = {"name": Path(named).name or named, "base": params["base"], "ft": params["ft"],
            "adapter": params.get("adapter"), "description": params.get("description")}
    settings = {k: v for k, v in params.items() if k not in ("base", "ft", "adapter", "description")}
    result = call_engine(methods.TRIAGE_BOARD, typed(methods.TRIAGE_BOARD, {
        **settings, "pairs": [pair], "name": pair["name"], "reports": True}),
                         title="triage", target=target)
    entry = result.pairs[0]
    if entry.error:
        fail(entry.error)
    write_html(html, result.to_json())
    return entry.report or {}
