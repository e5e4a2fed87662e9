"""The triage op: one pair from models to a readable report."""

from __future__ import annotations

from typing import Any

from engine.analysis.layer_choice import parse_layer
from engine.analysis.triage import TriageOptions, triage
from engine.jobs import JobContext
from engine.ops import op
from engine.ops.adl import request_for
from engine.protocol import methods
from engine.protocol.methods import TriagePair


def options_for(params: TriagePair) -> TriageOptions:
    """What the report reads beside the ADL run."""
    return TriageOptions(layer=parse_layer(params.layer), positions=params.positions, description=params.description,
                         top_k=params.top_k, steer=params.steer, n_prompts=params.n_prompts,
                         max_strength=params.max_strength, judge=params.judge, protocol=params.protocol)


@op(methods.TRIAGE_PAIR)
def triage_pair(params: TriagePair, ctx: JobContext) -> dict[str, Any]:
    """Every stage is cached: a second triage of the same pair reads the store."""
    return triage(request_for(params), options_for(params), ctx)
