"""`difflens replay`: open a saved session's panes with no engine and no torch, or rerun it on a new pair.

Replay is the ordinary workbench over a `SessionClient` with no live engine: every pane asks as it did when
the session was recorded, and the recording answers.
"""

from __future__ import annotations

from store.errors import StoreError
from tui.app import DiffLensApp
from tui.screens.compare import CompareApp
from tui.sessions.client import SessionTap
from tui.sessions.rerun import Step
from tui.sessions.source import SessionSource, load_source


def replay_app(ref: str | SessionSource) -> DiffLensApp:
    """The workbench on session `ref` (store name/id or session file), answered only from the recording."""
    source = load_source(ref) if isinstance(ref, str) else ref
    if not source.run:
        raise StoreError(f"session {source.name!r} has no run to show", "record one that opens a run")
    return DiffLensApp(client_factory=None, session=SessionTap(source=source))


def compare_app(old_label: str, new_label: str, steps: list[Step]) -> CompareApp:
    return CompareApp(steps, old_label, new_label)
