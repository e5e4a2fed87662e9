"""Ops about NDIF itself: the models it serves now."""

from __future__ import annotations

from typing import Any

from engine.jobs import JobContext
from engine.ndif.access import host, served_models
from engine.ops import op


@op("ndif.models")
def models(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Models NDIF has deployed (RUNNING ones answer now); a one-line error when NDIF cannot be reached."""
    return {"host": host(), "models": [d.to_json() for d in served_models()]}
