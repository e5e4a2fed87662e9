"""A client that answers engine methods from a recording instead of an engine.

A recording is JSON: `{"description": str, "calls": [{"method", "params", "result" | "error", "events"}]}`.
A call is answered by the most specific entry whose `params` are a subset of the call's params (so an entry
with `{}` is that method's default). Long ops replay their `events` (progress, partial) before the result.
The workbench uses it exactly like the engine client, which is what lets recorded results (tests, replay)
paint the same panes with no engine and no torch.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


class NotRecorded(LookupError):
    """The recording has no answer for this method and these params."""


class RecordedFailure(RuntimeError):
    """The recording says this call failed (its `error` text)."""


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


class RecordedClient:
    """Engine-client lookalike over recorded answers (`call`, `run_job`, `cancel`, `close`, `description`)."""

    def __init__(self, recording: dict[str, Any], *, event_delay_s: float = 0.0) -> None:
        self.description = str(recording.get("description", "recorded session"))
        self._entries: list[dict[str, Any]] = list(recording.get("calls", ()))
        self._event_delay_s = event_delay_s
        self._listeners: list[Callable[[dict[str, Any]], None]] = []
        self.asked: list[tuple[str, dict[str, Any]]] = []
        self.cancelled: list[str] = []
        self.closed = False

    @classmethod
    def from_file(cls, path: str | Path, **kwargs: Any) -> RecordedClient:
        return cls(json.loads(Path(path).read_text(encoding="utf-8")), **kwargs)

    def _answer(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.asked.append((method, params))
        best: dict[str, Any] | None = None
        for entry in self._entries:
            want = entry.get("params") or {}
            if entry["method"] != method or not all(k in params and _same(params[k], v) for k, v in want.items()):
                continue
            if best is None or len(want) > len(best.get("params") or {}):
                best = entry
        if best is None:
            raise NotRecorded(f"{method} with {json.dumps(params, sort_keys=True)} is not in the recording")
        if "error" in best:
            raise RecordedFailure(str(best["error"]))
        return best

    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """The recorded result of a short op."""
        return copy.deepcopy(self._answer(method, params or {})["result"])

    async def run_job(self, method: str, params: dict[str, Any],
                      on_event: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Replay a long op: its recorded events in order (optionally paced), then its result."""
        entry = self._answer(method, params)
        for event in entry.get("events", ()):
            if on_event is not None:
                on_event(copy.deepcopy(event))
            await asyncio.sleep(self._event_delay_s)
        return copy.deepcopy(entry["result"])

    async def cancel(self, job_id: str) -> None:
        """Recorded jobs finish as they replay; the request is remembered for inspection."""
        self.cancelled.append(job_id)

    def on_notification(self, callback: Callable[[dict[str, Any]], None]) -> None:
        self._listeners.append(callback)

    async def close(self) -> None:
        self.closed = True
