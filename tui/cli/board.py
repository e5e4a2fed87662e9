"""`difflens triage --pairs FILE`: the ranked board in the terminal, as JSON, or as static HTML pages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from engine.protocol import methods
from engine.protocol.report_results import TriageBoardResult, TriageReport
from tui.cli.engine_call import call_engine, typed
from tui.cli.options import parse_layers
from tui.cli.output import emit_json, err, fail, out
from tui.render.board_terminal import board_view
from tui.render.report_html import write_report

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
    """Triage every pair of the file (or of a `hub:` query) through the engine, then print or write the board."""
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


def single_pair_board(params: dict[str, Any], html: Path, target: str | None) -> TriageReport:
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
    if entry.report is None:
        fail(f"the engine kept no report for {entry.name} — run the triage again")
    write_html(html, result)
    return entry.report
