"""Finished answers of engine methods, kept whole under a key the engine computes from everything the answer
depends on besides the store (`engine/answers`), so that a cached report is read back in milliseconds instead
of being rebuilt by an engine that must first import torch.

An answer names the results it was built from (`deps`, e.g. its ADL run); it is served only while each of
them is still in the store, so an answer never outlives the data a user would open next. Answers are not
part of exported bundles: they are derived, and rebuilt on demand."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from store.db import connect, store_error
from store.errors import log
from store.hashing import canonical_json
from store.paths import tensors_dir
from store.schema import ANSWERS, RESULTS


def get(key: str) -> dict[str, Any] | None:
    """The answer stored under `key`, or None when there is none, it does not parse, or one of the results it
    was built from is gone (the caller then computes it). A database fault is a `StoreError`."""
    try:
        rows = list(connect()[ANSWERS].rows_where("key = ?", [key], limit=1))
        if not rows:
            return None
        try:
            answer, deps = json.loads(rows[0]["answer"]), json.loads(rows[0]["deps"])
        except (TypeError, ValueError):
            return None
        if not isinstance(answer, dict) or not isinstance(deps, list) or not all(_present(str(d)) for d in deps):
            return None
    except sqlite3.Error as exc:
        raise store_error(exc) from None
    return answer


def put(key: str, method: str, answer: dict[str, Any], deps: list[str]) -> None:
    """Keep `answer` under `key`. A store that cannot take it (full disk, read-only) costs only the speed-up:
    the answer was already given, so this logs and returns."""
    row = {"key": key, "method": method, "answer": canonical_json(answer), "deps": canonical_json(sorted(deps)),
           "created": time.time()}
    try:
        connect().table(ANSWERS).upsert(row, pk="key")
    except sqlite3.Error as exc:
        log.warning("warning: could not keep the answer of %s: %s", method, store_error(exc))


def _present(key: str) -> bool:
    record = list(connect()[RESULTS].rows_where("key = ? and status = 'done'", [key], select="file", limit=1))
    return bool(record) and (tensors_dir() / record[0]["file"]).is_file()
