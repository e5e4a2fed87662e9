"""Ops about NDIF itself: the models it serves now."""

from __future__ import annotations

from typing import Any

from engine.jobs import JobContext
from engine.ndif.access import host, served_models
from engine.ops import op
from engine.protocol import methods


@op(methods.NDIF_MODELS)
def models(params: methods.NoParams, ctx: JobContext) -> dict[str, Any]:
    """Asks NDIF each time: what it serves changes."""
    return {"host": host(), "models": [d.to_json() for d in served_models()]}
