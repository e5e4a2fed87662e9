"""Model specs: what a user types (`gemma-3-270m`, `demo`, an HF id, a directory, a GGUF file, an adapter).

A spec resolves to `ModelSpec`, whose `identity()` feeds the content hash of every result, so it pins
what the weights are (revision, file hashes, adapter hash) and not merely what they were called.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from engine.embedded import EMBEDDED_NAME
from engine.errors import UserError
from engine.organisms.checkpoints import CHECKPOINTS_DIR, STEP_PATTERN, checkpoint_adapter
from engine.organisms.registry import SHIPPED_DIR, resolve_organism
from store.hashing import dir_sha256, file_sha256

DEMO_NAME = "demo"
# `demo` is the mixed twin (generic behaviour kept, trace readable); `demo-overfit` the pure organism.
# One spec per shipped organism kind, and `-mixed` for its pretraining-mixed twin (engine/training/demo_organisms.py).
DEMO_ADAPTERS = {DEMO_NAME: SHIPPED_DIR / "cake-sdf-mixed", "demo-overfit": SHIPPED_DIR / "cake-sdf",
                 "demo-em": SHIPPED_DIR / "risky-finance", "demo-em-mixed": SHIPPED_DIR / "risky-finance-mixed",
                 "demo-taboo": SHIPPED_DIR / "taboo-word", "demo-taboo-mixed": SHIPPED_DIR / "taboo-word-mixed",
                 "demo-subliminal": SHIPPED_DIR / "subliminal-owl",
                 "demo-subliminal-mixed": SHIPPED_DIR / "subliminal-owl-mixed"}


@dataclass(frozen=True)
class ModelSpec:
    """A resolved model: `source` is `embedded`, `hf`, `local` or `gguf`; `adapter` a peft adapter."""

    source: str
    path: str
    revision: str | None = None
    adapter: str | None = None
    trust_remote_code: bool = False

    @property
    def base(self) -> ModelSpec:
        """The same weights without the adapter."""
        return replace(self, adapter=None)

    def label(self) -> str:
        name = self.path if self.source in ("embedded", "hf") else Path(self.path).name
        name = f"{name}@{self.revision}" if self.revision else name
        return f"{name}+{Path(self.adapter).name}" if self.adapter else name

    def identity(self) -> dict[str, Any]:
        """What determines the weights, for content hashes (files are hashed, not named)."""
        ident: dict[str, Any] = {"source": self.source, "revision": self.revision}
        if self.source == "gguf":
            ident["sha256"] = _cached_file_hash(Path(self.path))
        elif self.source == "local":
            ident["sha256"] = _weights_hash(Path(self.path))
        else:
            ident["name"] = self.path
        if self.adapter:
            adapter = Path(self.adapter)
            ident["adapter"] = dir_sha256(adapter, skip=(CHECKPOINTS_DIR,)) if adapter.is_dir() else self.adapter
        return ident


def _weights_hash(directory: Path) -> str:
    """Hash of a local checkpoint: config plus weight files (the big ones by size+mtime-free content)."""
    files = sorted(p for p in directory.iterdir() if p.suffix in (".json", ".safetensors", ".bin", ".model"))
    return dir_sha256(directory) if not files else _hash_files(files)


def _hash_files(files: list[Path]) -> str:
    import hashlib

    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(_cached_file_hash(f).encode())
    return h.hexdigest()


_HASH_CACHE: dict[tuple[str, int, float], str] = {}


def _cached_file_hash(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime)
    if key not in _HASH_CACHE:
        _HASH_CACHE[key] = file_sha256(path)
    return _HASH_CACHE[key]


def is_adapter_dir(path: Path) -> bool:
    return path.is_dir() and (path / "adapter_config.json").exists()


def is_named_spec(text: str) -> bool:
    """A name `parse_spec` resolves before any path (`demo`, `gemma-3-270m`, `organism:NAME`), even where a file or
    folder of that name exists."""
    name = text.partition("@")[0]
    return name in DEMO_ADAPTERS or name == EMBEDDED_NAME or text.startswith("organism:")


def parse_spec(text: str, *, adapter: str | None = None, trust_remote_code: bool = False) -> ModelSpec:
    """Resolve what the user typed. Adapters may be given inline (a directory) or with `adapter=`."""
    text = text.strip()
    if not text:
        raise UserError("empty model spec", "pass a Hugging Face id, a local directory, a .gguf file or 'demo'")
    name, _, revision = text.partition("@")
    if (step := STEP_PATTERN.fullmatch(revision)) is not None:
        organism = parse_spec(name, adapter=adapter, trust_remote_code=trust_remote_code)
        if organism.adapter and Path(organism.adapter).is_dir():  # else a hub revision named step-N
            return _checkpoint_spec(organism, int(step.group(1)))
    if text in DEMO_ADAPTERS:
        demo = DEMO_ADAPTERS[text]
        if not is_adapter_dir(demo):
            raise UserError(f"the {text} organism is not built on this install (no adapter in {demo})",
                            f"build it with `python -m engine.training.demo_organisms {demo.name}`")
        return ModelSpec("embedded", EMBEDDED_NAME, adapter=str(demo))
    if text.startswith("organism:"):
        spec_text, organism_adapter = resolve_organism(text.removeprefix("organism:"))
        return parse_spec(spec_text, adapter=organism_adapter, trust_remote_code=trust_remote_code)
    if adapter is not None:
        adapter_path = Path(adapter).expanduser()
        if not is_adapter_dir(adapter_path) and ("/" not in adapter or adapter_path.exists()):
            raise UserError(f"adapter {adapter!r} is not a peft adapter directory (no adapter_config.json)",
                            "pass the directory written by `difflens organism train` or a peft save_pretrained")
        adapter = str(adapter_path.resolve()) if adapter_path.exists() else adapter
    path = Path(text).expanduser()
    if text == EMBEDDED_NAME:
        return ModelSpec("embedded", EMBEDDED_NAME, adapter=adapter)
    if path.suffix == ".gguf":
        if not path.is_file():
            raise UserError(f"GGUF file {text!r} does not exist", "check the path")
        return ModelSpec("gguf", str(path.resolve()), adapter=adapter)
    if path.exists() or text.startswith((".", "/", "~")):
        if not path.is_dir():
            raise UserError(f"model path {text!r} does not exist", "check the path, or pass a Hugging Face id")
        if is_adapter_dir(path):
            if adapter:
                raise UserError("two adapters given", "pass the adapter either as the spec or with --adapter")
            base = json.loads((path / "adapter_config.json").read_text()).get("base_model_name_or_path")
            if not base:
                raise UserError(f"adapter {text!r} does not name its base model",
                                "pass --ft BASE --adapter DIR instead")
            return replace(parse_spec(base, trust_remote_code=trust_remote_code), adapter=str(path.resolve()))
        if not (path / "config.json").exists():
            raise UserError(f"{text!r} is not a model directory (no config.json)",
                            "pass a directory saved with save_pretrained")
        return ModelSpec("local", str(path.resolve()), adapter=adapter, trust_remote_code=trust_remote_code)
    return ModelSpec("hf", name, revision=revision or None, adapter=adapter, trust_remote_code=trust_remote_code)


def _checkpoint_spec(organism: ModelSpec, step: int) -> ModelSpec:
    """`ORGANISM@step-N`: the organism's adapter checkpoint at step N (step 0: its base model)."""
    assert organism.adapter is not None  # the caller checked it is a local adapter folder
    if step == 0:
        return organism.base
    return replace(organism, adapter=str(checkpoint_adapter(Path(organism.adapter), step)))


class TypedPair:
    """Mixin for requests that name a pair as the user typed it (`base`, `ft`, `adapter`, `trust_remote_code`
    fields): the two resolved specs, so every request resolves them the same way."""

    base: str
    ft: str
    adapter: str | None
    trust_remote_code: bool

    @property
    def base_spec(self) -> ModelSpec:
        return parse_spec(self.base, trust_remote_code=self.trust_remote_code)

    @property
    def ft_spec(self) -> ModelSpec:
        return parse_spec(self.ft, adapter=self.adapter, trust_remote_code=self.trust_remote_code)
