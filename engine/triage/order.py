"""Run order: pairs grouped by base model so that each model is loaded once and stays warm in `MODELS`.

Within a base's group the pairs that load only the base's weights come first (identical pairs and
adapters of the base itself, which `MODELS` attaches to the one loaded base and switches per batch), then
full finetunes; groups follow the file's order. Unresolvable specs keep their place at the end (they
fail fast, without loading anything)."""

from __future__ import annotations

from engine.models.specs import ModelSpec
from engine.triage.planned import Planned


def plan(planned: list[Planned]) -> list[Planned]:
    """Planned pairs in load-minimising order (stable within each group)."""
    groups: dict[ModelSpec, list[Planned]] = {}
    for item in planned:
        if item.loads is not None:
            groups.setdefault(item.loads[0], []).append(item)
    ordered = []
    for members in groups.values():
        ordered += sorted(members, key=lambda p: (len(p.loads or ()) > 1, _adapter(p)))
    return ordered + [p for p in planned if p.loads is None]


def _adapter(item: Planned) -> bool:
    return item.specs is not None and item.specs[1].adapter is not None


def count_loads(planned: list[Planned]) -> int:
    """Model loads this order costs with an unbounded cache (each distinct checkpoint once)."""
    return len({spec for p in planned for spec in p.loads or ()})
