"""What a long-running operation may do while it runs: report progress, stream partials, notice cancel."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from engine.errors import JobCancelled

ProgressSink = Callable[[dict[str, Any]], None]

MIN_INTERVAL_S = 0.25
"""Events of a fine count (more than `COARSE_UNITS` units, e.g. tokens) closer together than this are dropped (a
count's first and last are always sent), so a per-token reporter costs a clock read, not a notification."""
COARSE_UNITS = 100
"""A count of at most this many units (training steps, batches, phases) reports every unit."""


@dataclass
class JobContext:
    """Handed to every op. `emit` receives `{"type": "progress"|"partial", ...}` events (JSON-able).

    Progress carries `eta_s`, from the rate since the current count began (a new count begins when `total`
    changes or `done` goes back, e.g. the next stage), so every client shows the same ETA."""

    emit: ProgressSink = lambda event: None
    cancel_event: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.monotonic)
    stages: list[str] = field(default_factory=list)
    _count: tuple[float, int, int | None] | None = field(default=None, init=False, repr=False)
    _last: tuple[float, int, str] = field(default=(0.0, -1, ""), init=False, repr=False)

    def progress(self, done: int, total: int | None, message: str = "") -> None:
        """Report `done` of `total` units; also the point where a pending cancel takes effect."""
        now = time.monotonic()
        if self._count is None or total != self._count[2] or done < self._last[1]:
            self._count, self._last = (now, done, total), (0.0, -1, "")
        since, first_done, _ = self._count
        label = ": ".join([*self.stages, message] if message else self.stages)
        finished = total is not None and done >= total
        fine = total is None or total > COARSE_UNITS
        if (done, label) == self._last[1:] or (fine and now - self._last[0] < MIN_INTERVAL_S and done != first_done
                                               and not finished):
            self.check_cancelled()
            return
        self._last = (now, done, label)
        rate_done = done - first_done
        eta = (now - since) / rate_done * (total - done) if total and rate_done > 0 else None
        self.emit({"type": "progress", "done": done, "total": total, "message": label,
                   "elapsed_s": round(now - self.started, 3), "eta_s": None if eta is None else round(eta, 3)})
        self.check_cancelled()

    @contextmanager
    def stage(self, label: str) -> Iterator[None]:
        """Progress reported inside is prefixed with `label` (stages nest: "calibrating layer 12: tokens")."""
        self.stages.append(label)
        self._count = None
        try:
            yield
        finally:
            self.stages.pop()
            self._count = None

    @contextmanager
    def active(self) -> Iterator[None]:
        """Make this the context `current()` returns while an op runs; its clock starts now (not when queued)."""
        self.started = time.monotonic()
        token = _CURRENT.set(self)
        try:
            yield
        finally:
            _CURRENT.reset(token)

    def partial(self, payload: dict[str, Any]) -> None:
        """Stream a piece of the result before the job ends (e.g. one steered sample)."""
        self.emit({"type": "partial", **payload})

    def check_cancelled(self) -> None:
        if self.cancel_event.is_set():
            raise JobCancelled("cancelled")


_CURRENT: ContextVar[JobContext | None] = ContextVar("difflens_job", default=None)


def current() -> JobContext:
    """The running op's context, for code deep below an op (a generate loop) that counts steps without a `ctx`
    parameter threaded through every caller; outside a job a silent one."""
    return _CURRENT.get() or JobContext()


class NeedsModels(Exception):
    """Raised on a thread that answers only from the store (`store_only`) when it reaches a model."""


_STORE_ONLY = threading.local()


@contextmanager
def store_only() -> Iterator[None]:
    """On this thread, asking for any model (loaded or not) raises `NeedsModels`: what runs here can only answer
    from stored results, so it never competes with a job that is using the models (the model cache asks
    `refuse_models`)."""
    _STORE_ONLY.on = True
    try:
        yield
    finally:
        _STORE_ONLY.on = False


def refuse_models(what: str) -> None:
    """Raise `NeedsModels` if this thread answers only from the store; `what` names the model asked for."""
    if getattr(_STORE_ONLY, "on", False):
        raise NeedsModels(what)
