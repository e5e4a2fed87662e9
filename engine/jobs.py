"""What a long-running operation may do while it runs: report progress, stream partials, notice cancel."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.errors import JobCancelled

ProgressSink = Callable[[dict[str, Any]], None]


@dataclass
class JobContext:
    """Handed to every op. `emit` receives `{"type": "progress"|"partial", ...}` events (JSON-able)."""

    emit: ProgressSink = lambda event: None
    cancel_event: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.monotonic)

    def progress(self, done: int, total: int | None, message: str = "") -> None:
        """Report `done` of `total` units; also the point where a pending cancel takes effect."""
        elapsed = time.monotonic() - self.started
        eta = elapsed / done * (total - done) if total and done else None
        self.emit({"type": "progress", "done": done, "total": total, "message": message,
                   "elapsed_s": round(elapsed, 3), "eta_s": None if eta is None else round(eta, 3)})
        self.check_cancelled()

    def partial(self, payload: dict[str, Any]) -> None:
        """Stream a piece of the result before the job ends (e.g. one steered sample)."""
        self.emit({"type": "partial", **payload})

    def check_cancelled(self) -> None:
        if self.cancel_event.is_set():
            raise JobCancelled("cancelled")
