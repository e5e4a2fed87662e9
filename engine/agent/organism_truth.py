"""What difflens already knows about a finetune, for grading an agent without being told again: the shipped
demos (`demo`, `demo-overfit`), registry organisms (`organism:NAME@BASE`) and organisms trained here (an
adapter directory with its `organism.json`) carry their type, long description and key facts."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.models.specs import DEMO_ADAPTERS
from engine.organisms.registry import local_organisms, registry


@dataclass(frozen=True)
class OrganismTruth:
    name: str
    organism_type: str
    description: str  # the long description and the key facts, as the grader reads them


def _truth(name: str, entry: dict[str, Any]) -> OrganismTruth | None:
    long, kind = str(entry.get("long") or entry.get("short") or "").strip(), entry.get("type")
    if not long or not isinstance(kind, str):
        return None
    facts = [str(f) for f in entry.get("key_facts") or []]
    text = " ".join(long.split()) + ("\n\nKey facts:\n" + "\n".join(f"- {f}" for f in facts) if facts else "")
    return OrganismTruth(name, kind, text)


def _from_dir(path: Path) -> OrganismTruth | None:
    meta = path / "organism.json"
    if not meta.is_file():
        return None
    try:
        entry = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return _truth(path.name, entry) if isinstance(entry, dict) else None


def known_truth(ft: str, adapter: str | None = None) -> OrganismTruth | None:
    """The truth about the finetune a run names (`ft` and `adapter` as its request typed them), or None."""
    ft = ft.strip()
    if ft in DEMO_ADAPTERS:
        return _from_dir(DEMO_ADAPTERS[ft])
    if ft.startswith("organism:"):
        name = ft.removeprefix("organism:").partition("@")[0].strip()
        local = {n.lower().replace("-", "_"): p for n, p in local_organisms().items()}
        key = name.lower().replace("-", "_")
        if key in local:
            return _from_dir(local[key])
        entries = {n.lower().replace("-", "_"): (n, e) for n, e in registry()["organisms"].items()}
        return _truth(*entries[key]) if key in entries else None
    for candidate in (adapter, ft):
        if candidate and Path(candidate).expanduser().is_dir():
            found = _from_dir(Path(candidate).expanduser())
            if found is not None:
                return found
    return None
