"""The app's session glue: which session to record into or replay, notes, save-as, UI state saves.

Kept out of `tui/app.py` so the app stays a thin wiring of screens and keys.
"""

from __future__ import annotations

from typing import Any

from textual.app import App
from textual.screen import Screen

from store import sessions
from store.errors import ActionableError
from tui.link import EngineLink
from tui.screens.form import Field, FormScreen
from tui.screens.session import SessionWorkbench
from tui.screens.workbench import WorkbenchScreen
from tui.sessions.client import SessionTap
from tui.sessions.recording import SessionRecorder
from tui.sessions.source import SessionSource, load_source
from tui.sessions.view import cell, ui_snapshot


def session_tap(session: str | SessionTap | None) -> SessionTap:
    """A tap recording into session `session` (resuming its view when it has one), or an idle tap."""
    if isinstance(session, SessionTap):
        return session
    if not session:
        return SessionTap()
    recorder = SessionRecorder.open(session)
    source = load_source(recorder.session.id)
    return SessionTap(recorder, source if source.run else None)


def snapshot_ui(tap: SessionTap, screen: Screen[object]) -> None:
    """Save the workbench's UI state into the recording session (only when it changed)."""
    if isinstance(screen, WorkbenchScreen):
        tap.save_ui(ui_snapshot(screen.model, screen.has_class("-show-agent")))


def open_session(app: App[Any], tap: SessionTap, link: EngineLink, ref: str | SessionSource) -> None:
    """Open a saved session on its view. By name/id/file (the start screen) a store session keeps recording;
    a `SessionSource` (the app's own session, or a replay) keeps the tap's recorder as it is."""
    if isinstance(ref, SessionSource):
        source, recorder = ref, tap.recorder
    else:
        try:
            source = load_source(ref)
            recorder = SessionRecorder(sessions.get(source.id)) if source.path is None else None
        except ActionableError as exc:
            app.notify(str(exc), title="cannot open session", severity="error")
            return
    if not source.run:
        app.notify(f"session {source.name!r} has no run yet", severity="warning")
        return
    if recorder is not None:
        recorder.on_error = lambda text: app.notify(text, severity="error", timeout=15)
    tap.open(source, recorder)
    app.push_screen(SessionWorkbench(source, link))


def ask_note(app: App[Any], tap: SessionTap) -> None:
    """A note at the selected cell, committed to the recording session at once."""
    if tap.recorder is None:
        app.notify("no session is recording: ctrl+s names one first", severity="warning")
        return
    recorder = tap.recorder

    def done(values: dict[str, str] | None) -> None:
        if values and values["note"].strip():
            screen = app.screen
            ui = ui_snapshot(screen.model) if isinstance(screen, WorkbenchScreen) else {}
            recorder.note(values["note"].strip(), cell(ui))
            app.notify(f"note saved to {recorder.session.name!r}")

    app.push_screen(FormScreen(f"note for session {recorder.session.name}", [Field("note", "note")]), done)


def ask_save_as(app: App[Any], tap: SessionTap) -> None:
    """Name the analysis: everything asked so far is written to a new session, and recording goes on."""
    if tap.recorder is not None:
        app.notify(f"recording into session {tap.recorder.session.name!r}")
        return

    def done(values: dict[str, str] | None) -> None:
        if not values or not values["name"].strip():
            return
        try:
            recorder = SessionRecorder(sessions.create(values["name"]))
        except ActionableError as exc:
            app.notify(str(exc), severity="error")
            return
        recorder.on_error = lambda text: app.notify(text, severity="error", timeout=15)
        tap.start_recording(recorder)
        snapshot_ui(tap, app.screen)
        app.notify(f"saving this analysis as session {recorder.session.name!r}")

    app.push_screen(FormScreen("save session as", [Field("name", "session name")]), done)
