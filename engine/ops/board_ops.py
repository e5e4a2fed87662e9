"""The board op: `triage.board` triages many pairs into a ranked board (`triage.boards`, the latest one, is in
`catalog_ops`).

`triage.board` params:
  pairs      path of a pairs.yaml / pairs.csv, a list of {name, base, ft, adapter?, description?, SETTING?…}, or
             hub:BASE_ID[?TEXT] (the base's finetunes and adapters on the hub, written to a board file in the
             store's boards/ folder, which becomes the board's source)
  limit      at most this many pairs (the first of the file, the most downloaded from the hub)
  reports    true → each pair carries its full triage report (what `--html` renders)
  llm        openai:MODEL | anthropic:MODEL | local:SPEC for the one-line hypothesis (default: the
             configured LLM, else the keyword summary)
  devices    cuda:0,cuda:1: one worker per device; ray: auto | HOST:PORT: base groups as Ray tasks
  settings   a partial `TriageSettings` object (what `triage.pair` takes beside the models: corpus, n, k, layer,
             steer, …) over the file's `settings`; a pair's own keys override both, triage's defaults fill the rest.
Result: {"board", "name", "source", "pairs": [{name, base, ft, score, hypothesis, run, error, …}] sorted by
score (highest first), "plan": {"order", "model_loads"}, "skipped", "score_definition"}.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from engine.errors import UserError
from engine.jobs import JobContext
from engine.ops import op
from engine.protocol import methods
from engine.protocol.methods import BoardOptions
from engine.triage.board import run_board
from engine.triage.hub import PREFIX as HUB_PREFIX
from engine.triage.hub import HubQuery, hub_entries, write_hub_board
from engine.triage.pairs import BOARD_OPTIONS, load_board_file, validate_pairs
from store.paths import home


@op(methods.TRIAGE_BOARD)
def triage_board(params: methods.TriageBoard, ctx: JobContext) -> dict[str, Any]:
    """Given settings override the board file's; pairs finished before are read from the store."""
    pairs, limit = params.pairs, params.limit
    if limit is not None and limit <= 0:
        raise UserError(f"limit must be positive, got {limit}", "pass --limit 20 or leave it out")
    if isinstance(pairs, str) and pairs.startswith(HUB_PREFIX):
        query = HubQuery.parse(pairs)
        pairs = str(write_hub_board(query, hub_entries(query, limit, ctx=ctx), home() / "boards"))
    if isinstance(pairs, str):
        board = load_board_file(pairs)
        entries, settings, options, source, name = (board.pairs, board.settings, board.options, board.source,
                                                    Path(pairs).stem)
    elif isinstance(pairs, list):
        entries, settings, options, source, name = validate_pairs(pairs, "pairs"), {}, BoardOptions(), "", params.name
    else:
        raise UserError("parameter 'pairs' must be a file path or a list of pairs",
                        "pass pairs=pairs.yaml or pairs=[{name, base, ft}]")
    given = {option: value for option in BOARD_OPTIONS if (value := getattr(params, option)) is not None}
    resolved = replace(methods.TriageSettings(), **settings).overridden(params.settings or {}, "settings")
    entries = entries[:limit] if limit is not None else entries
    return run_board(entries, resolved, ctx, options=replace(options, **given), name=name, source=source,
                     reports=params.reports)

