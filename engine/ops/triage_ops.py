"""The triage op: one pair from models to a readable report."""

from __future__ import annotations

from typing import Any

from engine.adl.request import request_from_params
from engine.jobs import JobContext
from engine.ops import op
from engine.triage.pair_triage import options_from_params, triage


@op("triage.pair", long=True)
def triage_pair(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Compute + logit lens + Patchscope + calibrated steering + relevance + keyword hypothesis for a pair."""
    return triage(request_from_params(params), options_from_params(params), ctx)
