"""Ops that only read the store and the organism catalogue: the runs, the latest board, the organisms and
recipes. They import no torch (an import-linter contract holds them to it), so an engine loads them at start
and answers them while its other ops are still loading."""

from __future__ import annotations

from typing import Any

from engine.adl.stored_runs import list_runs
from engine.jobs import JobContext
from engine.ops import op
from engine.organisms.make_data import list_recipes
from engine.organisms.registry import list_organisms
from engine.protocol import methods
from engine.triage import state


@op(methods.ADL_RUNS)
def runs(params: methods.NoParams, ctx: JobContext) -> dict[str, Any]:
    """What the run picker lists."""
    return {"runs": list_runs()}


@op(methods.TRIAGE_BOARDS)
def triage_boards(params: methods.NoParams, ctx: JobContext) -> dict[str, Any]:
    """What the board view opens with."""
    return {"board": state.latest_board()}


@op(methods.ORGANISM_LIST)
def organism_list(params: methods.NoParams, ctx: JobContext) -> dict[str, Any]:
    """What `difflens organism list` shows."""
    return {"organisms": list_organisms(), "recipes": list_recipes()}
