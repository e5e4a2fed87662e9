"""Where difflens keeps its data: `DIFFLENS_HOME`, else the user's data dir."""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_cache_dir, user_data_dir


def home() -> Path:
    """The store root; created on first use."""
    root = Path(os.environ.get("DIFFLENS_HOME") or user_data_dir("difflens", appauthor=False))
    root.mkdir(parents=True, exist_ok=True)
    return root


def cache_dir() -> Path:
    """Converted model checkpoints and other re-creatable downloads (`DIFFLENS_CACHE` overrides)."""
    root = Path(os.environ.get("DIFFLENS_CACHE") or user_cache_dir("difflens", appauthor=False))
    root.mkdir(parents=True, exist_ok=True)
    return root


def tensors_dir() -> Path:
    path = home() / "tensors"
    path.mkdir(parents=True, exist_ok=True)
    return path


def db_path() -> Path:
    return home() / "difflens.sqlite"
