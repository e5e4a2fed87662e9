"""Where difflens keeps its data: `DIFFLENS_HOME`, else the user's data dir."""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_cache_dir, user_data_dir

from store.errors import StoreError


def private_dir(path: Path, what: str) -> Path:
    """`path` as a directory, created 0700 when new; anything else there is a one-line `StoreError`."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        kind = "a file" if path.is_file() else exc.strerror or str(exc)
        raise StoreError(f"cannot use {path} as {what} ({kind})",
                         "move what is there away, or set DIFFLENS_HOME to a writable directory") from None
    return path


def home() -> Path:
    """The store root; created (private) on first use."""
    return private_dir(Path(os.environ.get("DIFFLENS_HOME") or user_data_dir("difflens", appauthor=False)),
                       "the difflens store")


def cache_dir() -> Path:
    """Converted model checkpoints and other re-creatable downloads (`DIFFLENS_CACHE` overrides)."""
    root = Path(os.environ.get("DIFFLENS_CACHE") or user_cache_dir("difflens", appauthor=False))
    root.mkdir(parents=True, exist_ok=True)
    return root


def tensors_dir() -> Path:
    return private_dir(home() / "tensors", "the store's tensor directory")


def db_path() -> Path:
    return home() / "difflens.sqlite"


def interpolations_dir() -> Path:
    """Adapters scaled by t along a weight interpolation (their ADL runs belong to a trajectory: the run list
    leaves them out, as the null's)."""
    return home() / "interpolations"


def nulls_dir() -> Path:
    """The random adapters a report's significance is tested against (their ADL runs are the null's, not the
    user's: the run list leaves them out)."""
    return home() / "nulls"
