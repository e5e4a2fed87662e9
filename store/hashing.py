"""Content addresses: the same inputs always give the same key."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace, so equal dicts hash equally."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def json_sha256(obj: Any) -> str:
    """Content hash of a JSON value (e.g. an ordered list of texts), for cache keys and provenance records."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()


def content_key(kind: str, inputs: dict[str, Any], length: int = 16) -> str:
    """A short, stable id such as `adl-3f2a…` for a result of `kind` computed from `inputs`."""
    digest = hashlib.sha256(f"{kind}\n{canonical_json(inputs)}".encode()).hexdigest()
    return f"{kind}-{digest[:length]}"


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """Hash of a file's bytes, read in chunks (files can be hundreds of MB)."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def dir_sha256(path: Path, skip: tuple[str, ...] = ()) -> str:
    """Hash of a directory's files (names and bytes), e.g. an adapter directory; `skip` names top-level
    folders left out (an organism's checkpoints)."""
    h = hashlib.sha256()
    for item in sorted(p for p in path.rglob("*") if p.is_file() and p.relative_to(path).parts[0] not in skip):
        h.update(str(item.relative_to(path)).encode())
        h.update(file_sha256(item).encode())
    return h.hexdigest()
