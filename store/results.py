"""Cached results: tensors in a safetensors file named by content key, metadata in SQLite.

Writes are atomic (temp file + rename) and the file's sha256 is recorded; a reader re-hashes and treats a
missing, truncated or altered file as a cache miss (the caller recomputes), never serving it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

from store.atomic import atomic_path
from store.bundle_schema import decode_json_columns
from store.db import connect
from store.errors import StoreError, log, warn_skipped
from store.hashing import canonical_json, content_key, file_sha256
from store.paths import tensors_dir
from store.schema import RESULTS


@dataclass
class Result:
    """A cached result: `tensors` (numpy) and JSON `meta`, addressed by `key`."""

    key: str
    kind: str
    tensors: dict[str, np.ndarray]
    meta: dict[str, Any]
    inputs: dict[str, Any]


def key_for(kind: str, inputs: dict[str, Any]) -> str:
    return content_key(kind, inputs)


def file_for(key: str) -> Path:
    return tensors_dir() / f"{key}.safetensors"


def save(kind: str, inputs: dict[str, Any], tensors: dict[str, np.ndarray], meta: dict[str, Any],
         seconds: float = 0.0) -> Result:
    """Write tensors atomically, then record the row; returns the stored result."""
    key = key_for(kind, inputs)
    target = file_for(key)
    if target.is_dir():  # not a result: keep whatever is in it, out of the way, and write the result
        displaced = target.with_name(f".{target.name}.displaced-{time.time_ns()}")
        target.rename(displaced)
        log.warning("warning: %s was a directory; moved it to %s", target, displaced)
    contiguous = {name: np.ascontiguousarray(arr) for name, arr in tensors.items()}
    with atomic_path(target) as tmp:
        save_file(contiguous, str(tmp), metadata={"key": key, "kind": kind})
    now = time.time()
    connect().table(RESULTS).upsert({
        "key": key, "kind": kind, "status": "done", "file": target.name, "sha256": file_sha256(target),
        "bytes": target.stat().st_size, "inputs": canonical_json(inputs), "meta": canonical_json(meta),
        "created": now, "updated": now, "seconds": seconds}, pk="key")
    return Result(key=key, kind=kind, tensors=contiguous, meta=meta, inputs=inputs)


def row(key: str) -> dict[str, Any] | None:
    rows = list(connect()[RESULTS].rows_where("key = ?", [key], limit=1))
    return rows[0] if rows else None


def load(key: str, *, verify: bool = True) -> Result | None:
    """The result for `key`, or None when it is absent or its file fails verification."""
    record = row(key)
    if record is None or record["status"] != "done":
        return None
    path = tensors_dir() / record["file"]
    if not path.is_file() or (verify and file_sha256(path) != record["sha256"]):
        return None
    try:
        decoded = decode_json_columns(RESULTS, record)
        tensors = load_file(str(path))
    except StoreError as exc:
        warn_skipped(f"result {key}", exc)
        return None
    except Exception:  # a header that no longer parses is a corrupt cache entry, i.e. a miss
        return None
    return Result(key=key, kind=record["kind"], tensors=tensors, meta=decoded["meta"], inputs=decoded["inputs"])


def lookup(kind: str, inputs: dict[str, Any]) -> Result | None:
    return load(key_for(kind, inputs))


def keys_with_prefix(kind: str, prefix: str) -> list[str]:
    """Keys of `kind` that start with `prefix`, so that a user may name a result by a copied prefix of its id."""
    rows = connect()[RESULTS].rows_where("kind = ? and substr(key, 1, ?) = ?", [kind, len(prefix), prefix],
                                           select="key", order_by="key")
    return [r["key"] for r in rows]


def list_results(kind: str | None = None) -> list[dict[str, Any]]:
    """Finished and in-flight result rows, newest first, JSON decoded; an unreadable row is skipped with a warning."""
    where, args = ("kind = ?", [kind]) if kind else (None, [])
    out = []
    for r in connect()[RESULTS].rows_where(where, args, order_by="updated desc"):
        try:
            out.append({**r, **decode_json_columns(RESULTS, r)})
        except StoreError as exc:
            warn_skipped(f"result {r['key']}", exc)
    return out
