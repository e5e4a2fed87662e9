"""Run order: pairs grouped by base model so that each model is loaded once and stays warm in `MODELS`.

Within a base's group the pairs that load only the base's weights come first (identical pairs and
adapters of the base itself, which `MODELS` attaches to the one loaded base and switches per batch), then
full finetunes; groups follow the file's order. Unresolvable specs keep their place at the end (they
fail fast, without loading anything)."""

from __future__ import annotations

from dataclasses import dataclass

from engine.errors import UserError
from engine.models.specs import ModelSpec, parse_spec
from engine.triage.pairs import PairEntry


@dataclass(frozen=True)
class Planned:
    """A pair with the models it loads (`None` when its specs do not resolve: it will be reported)."""

    entry: PairEntry
    loads: tuple[ModelSpec, ...] | None


def models_loaded(entry: PairEntry, trust_remote_code: bool = False) -> tuple[ModelSpec, ...]:
    """The weights `MODELS` loads for this pair: each side's base checkpoint (adapters attach to it)."""
    base = parse_spec(entry.base, trust_remote_code=trust_remote_code).base
    ft = parse_spec(entry.ft, adapter=entry.adapter, trust_remote_code=trust_remote_code).base
    return (base,) if ft == base else (base, ft)


def plan(entries: list[PairEntry], trust_remote_code: bool = False) -> list[Planned]:
    """Entries in load-minimising order (stable within each group)."""
    planned = []
    for entry in entries:
        try:
            planned.append(Planned(entry, models_loaded(entry, trust_remote_code)))
        except UserError:
            planned.append(Planned(entry, None))
    groups: dict[ModelSpec, list[Planned]] = {}
    for item in planned:
        if item.loads is not None:
            groups.setdefault(item.loads[0].base, []).append(item)
    ordered = []
    for members in groups.values():
        ordered += sorted(members, key=lambda p: (len(p.loads or ()) > 1, _adapter(p.entry, trust_remote_code)))
    return ordered + [p for p in planned if p.loads is None]


def _adapter(entry: PairEntry, trust_remote_code: bool) -> bool:
    return parse_spec(entry.ft, adapter=entry.adapter, trust_remote_code=trust_remote_code).adapter is not None


def count_loads(planned: list[Planned]) -> int:
    """Model loads this order costs with an unbounded cache (each distinct checkpoint once)."""
    return len({spec for p in planned for spec in p.loads or ()})
