"""The engine client the app actually holds: replays a session's answers, records live calls, or both.

`SessionTap` is the app's session state (what to replay, where to record); it outlives reconnects, and
`tap.wrap(factory)` makes every new client a `SessionClient` over it. A call the opened session has answered
before is answered by its `ReplayClient` (no engine, no torch); any other goes to the live engine, if there
is one, and is recorded. With no engine (replay) an unrecorded call is a user-facing error, shown as a notice.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from typing import Any

from engine.protocol import methods
from tui.client import ClientFactory, EngineClient, EventCallback, NotificationCallback, UserFacingError
from tui.sessions.recording import SessionRecorder, is_recorded
from tui.sessions.replay import OFFLINE_FIX, NotRecorded, ReplayClient
from tui.sessions.source import Answers, SessionSource

UNSAVED_LIMIT = 2000


def session_replay(source: SessionSource) -> ReplayClient[Answers]:
    """The session's recorded answers as an engine client."""
    return ReplayClient(Answers(source.actions), f"replay of {source.name} (no engine)")


class SessionTap:
    """What the app's client replays (`replay`) and records into (`recorder`); both optional."""

    def __init__(self, recorder: SessionRecorder | None = None, source: SessionSource | None = None) -> None:
        self.recorder = recorder
        self.source = source
        self.replay = session_replay(source) if source is not None else None
        # Answers seen while no session records, so "save as" can still keep what is on screen.
        self.unsaved: deque[tuple[str, dict[str, Any], str, dict[str, Any], list[dict[str, Any]], float]] = deque(
            maxlen=UNSAVED_LIMIT)

    def open(self, source: SessionSource, recorder: SessionRecorder | None) -> None:
        """Switch to another session: answer from it, record into `recorder` (None: a file, not recorded)."""
        self.source, self.replay, self.recorder = source, session_replay(source), recorder

    def start_recording(self, recorder: SessionRecorder) -> None:
        """Record from now on, starting with every answer seen so far in this app."""
        self.recorder = recorder
        while self.unsaved:
            method, params, kind, result, events, seconds = self.unsaved.popleft()
            recorder.finish(recorder.begin(method, params, kind), result=result, events=events, seconds=seconds)

    def wrap(self, factory: ClientFactory | None) -> ClientFactory:
        """A factory of session clients over `factory`'s live clients (None: replay with no engine)."""
        async def make() -> EngineClient:
            return SessionClient(await factory() if factory is not None else None, self)

        return make

    def save_ui(self, ui: dict[str, Any]) -> None:
        if self.recorder is not None:
            self.recorder.save_ui(ui)


class SessionClient(EngineClient):
    """Answers from the tap's session first, else from `live` (recording the call), else fails clearly."""

    def __init__(self, live: EngineClient | None, tap: SessionTap) -> None:
        self.live = live
        self.tap = tap
        name = tap.source.name if tap.source is not None else "session"
        self.description = live.description if live is not None else f"replay of {name} (no engine)"

    def __getattr__(self, name: str) -> Any:
        """The live client's own attributes (e.g. its transport) stay reachable through the wrapper."""
        live = self.__dict__.get("live")
        if live is None:
            raise AttributeError(name)
        return getattr(live, name)

    def _offline(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        if method == methods.ENGINE_STATUS.name:
            return {"device": "replay", "models": []}
        if method == methods.ADL_RUNS.name:
            return {"runs": self.tap.replay.book.runs() if self.tap.replay is not None else []}
        raise UserFacingError(f"{method} with these settings is not in this session", OFFLINE_FIX)

    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        params = params or {}
        if self.tap.replay is not None:
            with contextlib.suppress(NotRecorded):
                return await self.tap.replay.call(method, params)
        if self.live is None:
            return self._offline(method, params)
        return await self._record(method, params, "call", None)

    async def run_job(self, method: str, params: dict[str, Any] | None = None,
                      on_event: EventCallback | None = None) -> dict[str, Any]:
        params = params or {}
        if self.tap.replay is not None:
            with contextlib.suppress(NotRecorded):
                return await self.tap.replay.run_job(method, params, on_event)
        if self.live is None:
            return self._offline(method, params)
        return await self._record(method, params, "job", on_event)

    async def _record(self, method: str, params: dict[str, Any], kind: str,
                      on_event: EventCallback | None) -> dict[str, Any]:
        """Ask the live engine, committing the action before and its outcome after."""
        assert self.live is not None
        recorder = self.tap.recorder
        action = recorder.begin(method, params, kind) if recorder is not None else None
        events: list[dict[str, Any]] = []

        def keep(event: dict[str, Any]) -> None:
            if event.get("type") == "partial":
                events.append(event)
            if on_event is not None:
                on_event(event)

        started = time.monotonic()
        try:
            if kind == "job":
                result = await self.live.run_job(method, params, keep)
            else:
                result = await self.live.call(method, params)
        except BaseException as exc:  # cancelled or failed: the row says so, the caller still sees the error
            if recorder is not None:
                recorder.finish(action, error=str(exc) or type(exc).__name__, events=events,
                                seconds=time.monotonic() - started)
            raise
        seconds = time.monotonic() - started
        if recorder is not None:
            recorder.finish(action, result=result, events=events, seconds=seconds)
        elif is_recorded(method):
            self.tap.unsaved.append((method, params, kind, result, events, seconds))
        return result

    async def submit(self, method: str, params: dict[str, Any] | None = None) -> str:
        if self.live is None:
            raise UserFacingError(f"{method} needs an engine", OFFLINE_FIX)
        return await self.live.submit(method, params)

    async def cancel(self, job_id: str) -> None:
        if self.live is not None:
            await self.live.cancel(job_id)

    def on_notification(self, callback: NotificationCallback) -> None:
        if self.live is not None:
            self.live.on_notification(callback)

    async def close(self) -> None:
        if self.live is not None:
            await self.live.close()
