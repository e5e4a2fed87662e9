"""`difflens replay`: open a saved session's panes with no engine and no torch, or rerun it on a new pair.

Replay is the ordinary workbench over a `SessionClient` with no live engine: every pane asks as it did when
the session was recorded, and the recording answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from store.errors import StoreError
from tui.app import DiffLensApp
from tui.screens.compare import CompareApp
from tui.sessions.client import SessionTap
from tui.sessions.rerun import Step, rerun
from tui.sessions.source import SessionSource, load_source


def replay_app(ref: str | SessionSource) -> DiffLensApp:
    """The workbench on session `ref` (store name/id or session file), answered only from the recording."""
    source = load_source(ref) if isinstance(ref, str) else ref
    if not source.run:
        raise StoreError(f"session {source.name!r} has no run to show", "record one that opens a run")
    return DiffLensApp(client_factory=None, session=SessionTap(source=source))


def rerun_steps(ref: str, base: str, ft: str, adapter: str | None, target: str | None,
                on_step: Callable[[int, int, str], None] | None = None,
                trust_remote_code: bool = False) -> tuple[str, str, list[Step]]:
    """Rerun session `ref` on the new pair; (old label, new label, steps)."""
    source = load_source(ref)
    new, steps = asyncio.run(rerun(source, base, ft, adapter=adapter, target=target, on_step=on_step,
                                   trust_remote_code=trust_remote_code))
    return f"{source.name}: {source.base} → {source.ft}", f"{new.name}: {new.base} → {new.ft}", steps


def compare_app(old_label: str, new_label: str, steps: list[Step]) -> CompareApp:
    return CompareApp(steps, old_label, new_label)
