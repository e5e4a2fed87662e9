"""The triage op: one pair from models to a readable report."""

from __future__ import annotations

from typing import Any

from engine.adl.request import request_for
from engine.jobs import JobContext
from engine.ops import op
from engine.protocol import methods
from engine.protocol.methods import TriagePair
from engine.triage.pair_triage import options_for, triage


@op(methods.TRIAGE_PAIR)
def triage_pair(params: TriagePair, ctx: JobContext) -> dict[str, Any]:
    """Every stage is cached: a second triage of the same pair reads the store."""
    return triage(request_for(params), options_for(params), ctx)
