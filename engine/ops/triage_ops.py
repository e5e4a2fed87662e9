"""The triage op: one pair from models to a readable report."""

from __future__ import annotations

from typing import Any

from engine.analysis.layer_choice import parse_layer
from engine.analysis.triage import TriageOptions, triage
from engine.jobs import JobContext
from engine.ops import op
from engine.ops.adl import request_from_params
from engine.ops.params import get, get_list


def options_from_params(params: dict[str, Any]) -> TriageOptions:
    return TriageOptions(layer=parse_layer(params.get("layer")), positions=get_list(params, "positions", int),
                         description=get(params, "description", str), top_k=get(params, "top_k", int, 20),
                         steer=get(params, "steer", bool, True), n_prompts=get(params, "n_prompts", int, 6),
                         max_strength=get(params, "max_strength", float), judge=get(params, "judge", str),
                         protocol=get(params, "protocol", str))


@op("triage.pair", long=True)
def triage_pair(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Compute + logit lens + Patchscope + calibrated steering + relevance + keyword hypothesis for a pair."""
    return triage(request_from_params(params), options_from_params(params), ctx)
