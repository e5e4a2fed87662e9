"""A blocking call to something outside (a Ray cluster, the model hub) that may never answer, given a deadline.

Client libraries connect without one (`ray.init` against a port that accepts and never answers; the hub's
listing has no HTTP timeout), and a job stuck there holds the engine's queue and cannot be cancelled. The call
runs on a daemon thread instead; the job's thread waits at most `seconds` for it, hearing a cancel meanwhile,
and then fails with the caller's one-line error. A call that never returns stays on its daemon thread (Python
cannot interrupt it); it holds nothing the job queue needs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from engine.errors import UserError
from engine.jobs import JobContext

T = TypeVar("T")
POLL_S = 0.1


def within_deadline(call: Callable[[], T], seconds: float, ctx: JobContext | None, name: str,
                    timed_out: UserError) -> T:
    """`call()`'s value, or its exception re-raised here; `timed_out` once `seconds` pass without an answer;
    `JobCancelled` (from `ctx`) when the job is cancelled while waiting. `name` names the thread."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # handed to the job's thread below
            outcome["error"] = exc

    threading.Thread(target=run, name=name, daemon=True).start()
    deadline = time.monotonic() + seconds
    while not outcome:
        if ctx is not None:
            ctx.check_cancelled()
        if time.monotonic() > deadline:
            raise timed_out
        time.sleep(POLL_S)
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]
