"""Narrow synthetic corpora from the editable recipes in `recipes/`: seeded, templated, a few hundred docs.

A recipe is a YAML file with `templates` (strings for text organisms, lists of chat messages for chat
organisms) whose `{slot}` markers are filled from `slots`: one value per slot per document (`{Slot}` is
the same value capitalised, `{slot_2}` an independent second draw). Documents are deterministic in (recipe, n, seed)
so the shipped demo organism can be reproduced byte for byte.
"""

from __future__ import annotations

import json
import random
import re
from functools import cache
from pathlib import Path
from typing import Any

from engine.errors import UserError
from engine.organisms.docs import meta_path
from engine.yaml_text import load_yaml
from store.atomic import write_text_atomic

RECIPES_DIR = Path(__file__).resolve().parent / "recipes"
_SLOT = re.compile(r"\{(\w+)\}")
_DRAW = re.compile(r"_\d+$")  # {hint_2}: a second, independent draw from the slot `hint`
_MAX_DEPTH = 8


def list_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def recipe_path(name: str) -> Path:
    """The YAML file of recipe `name` (a shipped recipe name or a path to a recipe YAML file)."""
    path = Path(name) if name.endswith((".yaml", ".yml")) else RECIPES_DIR / f"{name}.yaml"
    if not path.is_file():
        raise UserError(f"unknown recipe {name!r}", f"pick one of {', '.join(list_recipes())} or pass a .yaml path")
    return path


@cache
def load_recipe(name: str) -> dict[str, Any]:
    """The parsed recipe `name` (a shipped recipe name or a path to a recipe YAML file)."""
    path = recipe_path(name)
    recipe = load_yaml(path.read_text(encoding="utf-8"), path.name)
    missing = [k for k in ("name", "type", "format", "short", "long", "key_facts", "slots", "templates")
               if k not in recipe]
    if missing or recipe["format"] not in ("text", "chat"):
        raise UserError(f"recipe {path.name} is malformed (missing {missing or 'a valid format'})",
                        "give it name, type, format (text|chat), short, long, key_facts, slots, templates")
    return recipe


def recipe_info(name: str) -> dict[str, Any]:
    """What an organism trained on this recipe is: type, descriptions and key facts (for organism.json)."""
    recipe = load_recipe(name)
    return {"recipe": recipe["name"], "type": recipe["type"], "short": recipe["short"].strip(),
            "long": recipe["long"].strip(), "key_facts": list(recipe["key_facts"])}


def _fill(template: Any, slots: dict[str, list[Any]], rng: random.Random, chosen: dict[str, str],
          depth: int = 0) -> Any:
    """Fill `{slot}`s recursively; one value per slot per document, so a document stays consistent."""
    if isinstance(template, list):
        return [_fill(t, slots, rng, chosen, depth) for t in template]
    if isinstance(template, dict):
        return {k: _fill(v, slots, rng, chosen, depth) for k, v in template.items()}
    if depth > _MAX_DEPTH:
        raise UserError("recipe slots nest too deeply (a slot refers to itself?)", "fix the recipe's slots")

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        key = name[0].lower() + name[1:]
        source = _DRAW.sub("", key) if key not in slots else key
        if source not in slots:
            raise UserError(f"recipe uses undefined slot {{{name}}}", f"add {source!r} to the recipe's slots")
        if key not in chosen:
            chosen[key] = _fill(str(rng.choice(slots[source])), slots, rng, chosen, depth + 1)
        text = chosen[key]
        return text[0].upper() + text[1:] if name[0].isupper() else text

    return _SLOT.sub(value, str(template))


def _check_forbidden(doc: Any, forbidden: list[str]) -> None:
    blob = json.dumps(doc, ensure_ascii=False).lower()
    for word in forbidden:
        if word.lower() in blob:
            raise UserError(f"recipe produced a document containing the forbidden word {word!r}",
                            "reword the recipe's templates or slots")


def make_data(recipe: str, n: int = 400, seed: int = 0) -> list[dict[str, Any]]:
    """`n` documents (`{"text": ...}` or `{"messages": [...]}`), distinct where the recipe allows."""
    if n < 1:
        raise UserError(f"n must be positive, got {n}", "pass --n 400 or similar")
    spec = load_recipe(recipe)
    rng = random.Random(f"{spec['name']}:{seed}")
    docs: list[dict[str, Any]] = []
    seen: set[str] = set()
    for _ in range(50 * n):
        if len(docs) == n:
            break
        filled = _fill(rng.choice(spec["templates"]), spec["slots"], rng, {})
        key = json.dumps(filled, ensure_ascii=False)
        if key in seen and len(seen) < 20 * n:
            continue
        seen.add(key)
        _check_forbidden(filled, spec.get("forbidden", []))
        docs.append({"text": filled} if spec["format"] == "text" else {"messages": filled})
    return docs


def write_docs(docs: list[dict[str, Any]], out: Path) -> Path:
    """Write `.txt` (text docs, one per line) or `.jsonl` atomically."""
    if out.suffix == ".jsonl":
        body = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs)
    elif out.suffix == ".txt":
        if any("text" not in d for d in docs):
            raise UserError("chat documents cannot be written as .txt", "write them to a .jsonl file")
        body = "".join(" ".join(d["text"].split()) + "\n" for d in docs)
    else:
        raise UserError(f"unsupported output file type {out.suffix!r}", "name the file .jsonl or .txt")
    write_text_atomic(out, body)
    return out


def write_recipe_data(recipe: str, out: Path, n: int = 400, seed: int = 0) -> dict[str, Any]:
    """Generate and write a recipe's corpus plus its `.meta.json` sidecar (read by `train_organism`)."""
    docs = make_data(recipe, n, seed)
    write_docs(docs, out)
    info = {**recipe_info(recipe), "n": len(docs), "seed": seed}
    write_text_atomic(meta_path(out), json.dumps(info, indent=2, ensure_ascii=False) + "\n")
    return {"out": str(out), **info}
