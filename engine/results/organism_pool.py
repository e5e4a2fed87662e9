"""Organisms as the reference's token relevance reads them (`--protocol paper`): a description and the whole
finetuning dataset, and the shipped organisms as the pool of baseline organisms (the same tokens graded against
other organisms' descriptions: the control that a high relevance is not an accident)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.models.specs import ModelSpec
from engine.organisms.make_data import make_data
from engine.organisms.registry import SHIPPED_DIR, local_organisms

DEFAULT_DOCS = 400  # what `organism train` writes when an organism's card does not say


@dataclass(frozen=True)
class Organism:
    """`texts`: every finetuning document, a chat's message contents joined by newlines (as the reference's
    `_compute_frequent_tokens` joins them)."""

    name: str
    description: str
    texts: tuple[str, ...]
    recipe: str | None


def _card(directory: Path) -> dict[str, Any]:
    card = directory / "organism.json"
    return json.loads(card.read_text(encoding="utf-8")) if card.is_file() else {}


def organism_at(directory: Path, description: str | None = None) -> Organism | None:
    """The organism whose adapter is `directory` (None without a description from the user or its card)."""
    info = _card(directory)
    text = description or info.get("long") or info.get("short")
    if not text:
        return None
    recipe = info.get("recipe")
    texts: list[str] = []
    if recipe:
        for doc in make_data(recipe, int(info.get("data", {}).get("n_docs") or DEFAULT_DOCS), seed=0):
            if isinstance(doc.get("text"), str):
                texts.append(doc["text"])
            elif isinstance(doc.get("messages"), list):
                texts.append("\n".join(str(m.get("content", "")) for m in doc["messages"]))
    return Organism(directory.name, text, tuple(texts), recipe)


def finetune_organism(ft: ModelSpec, description: str | None = None) -> Organism | None:
    """The finetune as an organism: its adapter's card, or the user's description alone (no documents)."""
    if ft.adapter:
        return organism_at(Path(ft.adapter), description)
    return Organism(ft.label(), description, (), None) if description else None


def baseline_organisms(own: Organism) -> list[Organism]:
    """The shipped organisms other than `own`, one per recipe (a mixed twin teaches the same thing as its
    recipe's organism): not `own`'s recipe and not its description."""
    found: dict[str, Organism] = {}
    for path in local_organisms().values():
        other = organism_at(path) if path.parent == SHIPPED_DIR else None
        if other is not None and other.description != own.description and (other.recipe or other.name) not in (
                found.keys() | {own.recipe}):
            found[other.recipe or other.name] = other
    return list(found.values())
