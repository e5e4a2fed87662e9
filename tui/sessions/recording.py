"""Records what the workbench asks the engine into a named session, one committed row per action.

The recorder writes straight to the store (torch-free): a `running` row before the engine is asked, the result
JSON (and the streamed partial events a pane shows) when it answers. A store that cannot be written (disk full)
stops the recording with one message instead of breaking the workbench.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.protocol import methods
from store import sessions
from store.errors import ActionableError
from store.hashing import canonical_json

# Analysis actions only: status polls and list refreshes are not part of the analysis.
RECORDED_PREFIXES = (methods.ADL_COMPUTE.name, methods.ADL_SUMMARY.name, "readout.", "steer.", methods.AGENT_RUN.name,
                     "lens.")


def is_recorded(method: str) -> bool:
    return method.startswith(RECORDED_PREFIXES)


class SessionRecorder:
    """Appends actions, notes and UI state to one session; `on_done(seq)` fires once a row is committed."""

    def __init__(self, session: sessions.Session, on_error: Callable[[str], None] | None = None) -> None:
        self.session = session
        self.on_error = on_error
        self.on_done: Callable[[str], None] | None = None
        self.failed = ""
        self._last_ui = canonical_json(session.ui)

    @classmethod
    def open(cls, name: str) -> SessionRecorder:
        """Record into session `name`, creating it when it does not exist (resuming when it does)."""
        return cls(sessions.find(name) or sessions.create(name))

    def _guard(self, write: Callable[[], Any]) -> Any:
        if self.failed:
            return None
        try:
            return write()
        except ActionableError as exc:
            self.failed = str(exc)
            if self.on_error is not None:
                self.on_error(f"session {self.session.name!r} stopped recording: {exc}")
            return None

    def begin(self, method: str, params: dict[str, Any], kind: str) -> str | None:
        """Commit the action as in flight; returns its id (None when not recorded)."""
        if not is_recorded(method):
            return None
        action: str | None = self._guard(lambda: sessions.begin_action(self.session.id, method, params, kind))
        return action

    def finish(self, action_id: str | None, *, result: dict[str, Any] | None = None, error: str = "",
               events: list[dict[str, Any]] | None = None, seconds: float = 0.0) -> None:
        if action_id is None:
            return
        self._guard(lambda: sessions.finish_action(action_id, result=result, error=error, events=events,
                                                   seconds=seconds))
        if self.on_done is not None and not self.failed:
            self.on_done(action_id)

    def save_ui(self, ui: dict[str, Any]) -> None:
        """Store the UI state when it changed since the last save."""
        text = canonical_json(ui)
        if text != self._last_ui:
            self._last_ui = text
            self._guard(lambda: sessions.save_ui(self.session.id, ui))

    def note(self, text: str, cell: dict[str, Any] | None = None) -> None:
        self._guard(lambda: sessions.add_note(self.session.id, text, cell))
