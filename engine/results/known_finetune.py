"""What is known about a finetune before looking: the description and training texts of a local organism."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from engine.models.specs import ModelSpec
from engine.organisms.make_data import make_data


@dataclass
class KnownFinetune:
    description: str
    organism_type: str | None
    training_texts: list[str]


def known_finetune(ft: ModelSpec, description: str | None = None, n_texts: int = 40) -> KnownFinetune | None:
    """The user's description, else the `organism.json` beside the adapter (with its recipe's texts)."""
    card = Path(ft.adapter) / "organism.json" if ft.adapter else None
    info = json.loads(card.read_text()) if card is not None and card.exists() else {}
    text = description or info.get("long") or info.get("short")
    if not text:
        return None
    texts: list[str] = []
    if info.get("recipe"):
        for doc in make_data(info["recipe"], n_texts, seed=0):
            if isinstance(doc.get("text"), str):
                texts.append(doc["text"])
            elif isinstance(doc.get("messages"), list):
                texts.append(" ".join(m["content"] for m in doc["messages"] if m.get("role") == "assistant"))
    return KnownFinetune(text, info.get("type"), texts)
