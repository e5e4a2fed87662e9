"""A client that answers engine methods from recorded calls instead of an engine.

A recorded call is `{"method", "params", "result" | "error", "events"}`. `ReplayClient` answers from a
book of them: a saved session's `Answers` (exact params; the session client asks it first) or a
`Recording` file (tests, demos). Long ops replay their `events` (progress, partial) before the result.
The workbench uses it exactly like the engine client, which is what lets recorded results paint the same
panes with no engine and no torch.
"""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from tui.client import EngineClient, EngineError, EventCallback, NotificationCallback, UserFacingError

OFFLINE_FIX = "this is a replay with no engine: `difflens replay SESSION --rerun --base … --ft …` computes anew"


class Book(Protocol):
    """Recorded calls by method and params."""

    def find(self, method: str, params: dict[str, Any]) -> dict[str, Any] | None:
        """The recorded call that answers this one, or None."""


BookT = TypeVar("BookT", bound=Book)


class NotRecorded(UserFacingError):
    """The book has no answer for this method and these params."""


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


class Recording:
    """A recording file `{"description": str, "calls": [...]}`: a call is answered by the most specific entry
    whose `params` are a subset of the call's params (so an entry with `{}` is that method's default)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.description = str(data.get("description", "recorded session"))
        self._entries: list[dict[str, Any]] = list(data.get("calls", ()))

    def find(self, method: str, params: dict[str, Any]) -> dict[str, Any] | None:
        best: dict[str, Any] | None = None
        for entry in self._entries:
            want = entry.get("params") or {}
            if entry["method"] != method or not all(k in params and _same(params[k], v) for k, v in want.items()):
                continue
            if best is None or len(want) > len(best.get("params") or {}):
                best = entry
        return best


class ReplayClient(EngineClient, Generic[BookT]):
    """An engine client over a book of recorded calls; what it was asked, cancelled and closed stays readable."""

    def __init__(self, book: BookT, description: str, *, event_delay_s: float = 0.0) -> None:
        self.book = book
        self.description = description
        self._event_delay_s = event_delay_s
        self.asked: list[tuple[str, dict[str, Any]]] = []
        self.cancelled: list[str] = []
        self.closed = False

    @classmethod
    def from_recording(cls, data: dict[str, Any], *, event_delay_s: float = 0.0) -> ReplayClient[Recording]:
        recording = Recording(data)
        # `cls`, so a subclass (a test's scripted engine) gets an instance of itself
        return cls(recording, recording.description, event_delay_s=event_delay_s)  # type: ignore[arg-type,return-value]

    @classmethod
    def from_file(cls, path: str | Path, *, event_delay_s: float = 0.0) -> ReplayClient[Recording]:
        return cls.from_recording(json.loads(Path(path).read_text(encoding="utf-8")), event_delay_s=event_delay_s)

    def _answer(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.asked.append((method, params))
        entry = self.book.find(method, params)
        if entry is None:
            raise NotRecorded(f"{method} with {json.dumps(params, sort_keys=True)} is not recorded", OFFLINE_FIX)
        if entry.get("error"):
            raise EngineError(str(entry["error"]))
        return entry

    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """The recorded result of a short op."""
        return copy.deepcopy(self._answer(method, params or {})["result"])

    async def run_job(self, method: str, params: dict[str, Any] | None = None,
                      on_event: EventCallback | None = None) -> dict[str, Any]:
        """Replay a long op: its recorded events in order (optionally paced), then its result."""
        entry = self._answer(method, params or {})
        for event in entry.get("events", ()):
            if on_event is not None:
                on_event(copy.deepcopy(event))
            await asyncio.sleep(self._event_delay_s)
        return copy.deepcopy(entry["result"])

    async def submit(self, method: str, params: dict[str, Any] | None = None) -> str:
        raise UserFacingError(f"{method} needs an engine", OFFLINE_FIX)

    async def cancel(self, job_id: str) -> None:
        """Recorded jobs finish as they replay; the request is remembered for inspection."""
        self.cancelled.append(job_id)

    def on_notification(self, callback: NotificationCallback) -> None:
        """A recording sends no notifications beyond the events of the job being replayed."""

    async def close(self) -> None:
        self.closed = True
