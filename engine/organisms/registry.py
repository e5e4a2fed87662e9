"""The organism registry: the paper's public organisms (registry.yaml) plus organisms on this machine.

`organism:NAME@BASE` model specs resolve here. Registry organisms need model-hub access; local ones are
the shipped demos (`demo/`) and whatever `organism train` wrote under `$DIFFLENS_HOME/organisms/`.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from engine.errors import UserError
from engine.yaml_text import load_yaml
from store.paths import home

HERE = Path(__file__).resolve().parent
REGISTRY_FILE = HERE / "registry.yaml"
RUBRICS_FILE = HERE / "rubrics.yaml"
SHIPPED_DIR = HERE / "demo"
# The reference toolkit's ten rubric types (configs/diffing/grading_rubrics.yaml), in its order.
ORGANISM_TYPES = ("SDF", "EM", "Taboo", "Subliminal", "DomainAdaptation", "R1_distillation", "R1_uncensoring",
                  "behavioral_anomaly", "sandbaggers", "benign_quirk")


@cache
def _load(path: Path) -> dict[str, Any]:
    return load_yaml(path.read_text(encoding="utf-8"), path.name)


def registry() -> dict[str, Any]:
    return _load(REGISTRY_FILE)


def rubric(organism_type: str) -> str:
    """The grading rubric (1-5) for hypotheses about an organism of this type."""
    rubrics = _load(RUBRICS_FILE)
    if organism_type not in rubrics:
        raise UserError(f"no grading rubric for organism type {organism_type!r}",
                        f"pass --type one of {', '.join(rubrics)}")
    return rubrics[organism_type]


def local_dir() -> Path:
    """Where `organism train` puts organisms by default."""
    return home() / "organisms"


def _norm(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def local_organisms() -> dict[str, Path]:
    """Shipped and user-trained organism directories (those with an organism.json), by name."""
    found: dict[str, Path] = {}
    for root in (SHIPPED_DIR, local_dir()):
        if root.is_dir():
            for path in sorted(root.iterdir()):
                if (path / "organism.json").is_file() and (path / "adapter_config.json").is_file():
                    found.setdefault(path.name, path)
    return found


def list_organisms() -> list[dict[str, Any]]:
    """Every organism difflens knows: registry entries (with their bases) and local adapter dirs."""
    rows: list[dict[str, Any]] = []
    for name, path in local_organisms().items():
        meta = json.loads((path / "organism.json").read_text())
        rows.append({"name": name, "type": meta.get("type"), "short": meta.get("short"), "base": meta.get("base"),
                     "source": "shipped" if path.parent == SHIPPED_DIR else "local", "path": str(path),
                     "final_loss": meta.get("final_loss")})
    for name, entry in registry()["organisms"].items():
        rows.append({"name": name, "type": entry["type"], "short": entry["short"], "source": "registry",
                     "bases": sorted(entry["models"]), "dataset": entry.get("dataset")})
    return rows


def known_names() -> list[str]:
    return sorted({*local_organisms(), *registry()["organisms"]})


def resolve_organism(text: str) -> tuple[str, str | None]:
    """`NAME@BASE` (or a local `NAME`) → `(spec_text, adapter)`, the positional args of `parse_spec`."""
    name, _, base = text.strip().partition("@")
    local = {_norm(n): p for n, p in local_organisms().items()}
    if _norm(name) in local and not base:
        return str(local[_norm(name)]), None
    entries = {_norm(n): (n, e) for n, e in registry()["organisms"].items()}
    if _norm(name) not in entries:
        raise UserError(f"unknown organism {name!r}", f"known organisms: {', '.join(known_names())}")
    canonical, entry = entries[_norm(name)]
    models = entry["models"]
    if not base:
        if len(models) != 1:
            raise UserError(f"organism {canonical!r} exists for several base models",
                            "pick one: " + ", ".join(f"organism:{canonical}@{b}" for b in sorted(models)))
        base = next(iter(models))
    if base not in models:
        raise UserError(f"organism {canonical!r} has no finetune of base {base!r}",
                        "pick one: " + ", ".join(f"organism:{canonical}@{b}" for b in sorted(models)))
    model = models[base]
    if "adapter" in model:
        return registry()["bases"][base], model["adapter"]
    return model["model"], None


def validate_registry(path: Path | None = None) -> list[str]:
    """Problems with the registry file (empty when valid): missing fields, unknown bases or types."""
    file = path or REGISTRY_FILE
    data = load_yaml(file.read_text(encoding="utf-8"), file.name)
    problems: list[str] = []
    if not isinstance(data, dict) or not isinstance(data.get("bases"), dict) \
            or not isinstance(data.get("organisms"), dict):
        return ["the registry needs a 'bases' mapping and an 'organisms' mapping"]
    rubrics = _load(RUBRICS_FILE)
    for name, entry in data["organisms"].items():
        if not isinstance(entry, dict):
            problems.append(f"{name}: not a mapping")
            continue
        for key in ("type", "short", "long", "key_facts", "models"):
            if not entry.get(key):
                problems.append(f"{name}: missing {key}")
        if entry.get("type") not in ORGANISM_TYPES or entry.get("type") not in rubrics:
            problems.append(f"{name}: type {entry.get('type')!r} has no rubric")
        for base, model in (entry.get("models") or {}).items():
            if base not in data["bases"]:
                problems.append(f"{name}: unknown base {base!r}")
            ids = [model.get(k) for k in ("adapter", "model")] if isinstance(model, dict) else []
            if sum(isinstance(i, str) and i.count("/") == 1 for i in ids) != 1:
                problems.append(f"{name}@{base}: needs exactly one 'adapter' or 'model' hub id (owner/name)")
    return problems
