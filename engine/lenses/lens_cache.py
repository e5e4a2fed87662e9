"""Lens results in the store: the JSON payload in the metadata, the per-token arrays as tensors."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from store import results

Computed = tuple[dict[str, Any], dict[str, np.ndarray]]


def cached(kind: str, inputs: dict[str, Any], compute: Callable[[], Computed]) -> tuple[dict[str, Any], str, bool]:
    """(payload, key, cached): the stored payload for `inputs`, or `compute()` saved under its content key."""
    hit = results.lookup(kind, inputs)
    if hit is not None and "payload" in hit.meta:
        return hit.meta["payload"], hit.key, True
    started = time.monotonic()
    payload, tensors = compute()
    seconds = round(time.monotonic() - started, 3)
    stored = results.save(kind, inputs, tensors or {"empty": np.zeros(0, np.float32)},
                          {"payload": payload, "seconds": seconds}, seconds=seconds)
    return payload, stored.key, False
