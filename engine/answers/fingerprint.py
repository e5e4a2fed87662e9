"""What an answer depends on besides its params and the store: the code that computed it, the settings the
engine reads from its environment (judge, LLM, hub, NDIF), and the machine (device `auto` means this host's
GPUs). Each is hashed once per process; a change in any of them makes every kept answer a miss."""

from __future__ import annotations

import functools
import hashlib
import os
import socket
from importlib import metadata
from pathlib import Path

import store
from engine.llm.config import config_path
from store.hashing import canonical_json

_ROOTS = (Path(__file__).resolve().parent.parent, Path(store.__file__).resolve().parent)
_SOURCE_SUFFIXES = (".py", ".yaml", ".yml", ".json", ".txt", ".toml")
_PACKAGES = ("torch", "transformers", "nnsight", "peft", "safetensors", "sentence-transformers", "numpy")

_ENV_PREFIXES = ("DIFFLENS_", "NDIF_", "HF_", "HUGGINGFACE_", "TRANSFORMERS_", "OPENAI_", "ANTHROPIC_", "CUDA_",
                 "TORCH_", "PYTORCH_", "NNSIGHT_")
_ENV_IGNORED = frozenset({
    "DIFFLENS_RUNTIME_DIR", "DIFFLENS_SOCKET", "DIFFLENS_TOKEN", "DIFFLENS_TOKEN_FILE", "DIFFLENS_LOG_LEVEL",
    "DIFFLENS_SSH", "DIFFLENS_REMOTE_CMD", "DIFFLENS_SESSIONS_DIR", "DIFFLENS_CHECKPOINT_EVERY_S"})
"""Where the engine listens, how it logs and checkpoints: none of these changes an answer."""


@functools.cache
def code() -> str:
    """The engine's and the store's source text and the versions of the numeric packages."""
    h = hashlib.sha256()
    for root in _ROOTS:
        for path in sorted(p for p in root.rglob("*") if p.suffix in _SOURCE_SUFFIXES and p.is_file()
                           and "__pycache__" not in p.parts):
            h.update(f"{path.relative_to(root.parent)}\n".encode())
            h.update(hashlib.sha256(path.read_bytes()).digest())
    h.update(canonical_json({name: _version(name) for name in _PACKAGES}).encode())
    return h.hexdigest()


def environment() -> str:
    """The engine's settings from its environment and config file, and this machine's visible GPUs (read at
    every call: a long-lived engine sees the config file change)."""
    settings = {name: value for name, value in os.environ.items()
                if name.startswith(_ENV_PREFIXES) and name not in _ENV_IGNORED}
    config = config_path()
    machine = {"host": socket.gethostname(), "gpus": sorted(p.name for p in Path("/dev").glob("nvidia[0-9]*"))}
    return hashlib.sha256(canonical_json({"env": settings, "config": _read(config), "machine": machine})
                          .encode()).hexdigest()


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None
