"""Retry with exponential backoff for transient LLM failures (429, 5xx, timeouts, dropped connections).

Each backend says which errors are transient and how long the server asked it to wait; the schedule,
the notices and the final one-line error live here once."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from engine.errors import UserError
from engine.llm.base import EventSink

T = TypeVar("T")
log = logging.getLogger("difflens.agent.llm")

MAX_WAIT_S = 60.0


@dataclass(frozen=True)
class Transient:
    """How a backend classifies an error: retry it?, why, and the server's Retry-After (seconds) if any."""

    retry: bool
    reason: str
    retry_after_s: float | None = None
    fix: str = "wait and try again, or check the endpoint and its rate limits"


def backoff_s(attempt: int, retry_after_s: float | None, base_s: float = 1.0) -> float:
    """The server's Retry-After when given, else base·2^attempt; never more than a minute."""
    wait = retry_after_s if retry_after_s is not None else base_s * 2**attempt
    return max(0.0, min(MAX_WAIT_S, wait))


def with_retries(call: Callable[[], T], classify: Callable[[Exception], Transient], *, label: str,
                 max_retries: int, on_event: EventSink | None = None,
                 redact: Callable[[str], str] = lambda s: s) -> T:
    """Run `call`; on a transient error wait and try again, up to `max_retries` more times."""
    for attempt in range(max_retries + 1):
        try:
            return call()
        except Exception as exc:
            verdict = classify(exc)
            if not verdict.retry:
                raise
            if attempt == max_retries:
                raise UserError(f"{label} still failing after {max_retries + 1} tries: {redact(verdict.reason)}",
                                verdict.fix) from exc
            wait = backoff_s(attempt, verdict.retry_after_s)
            notice = {"type": "retry", "attempt": attempt + 1, "wait_s": round(wait, 3),
                      "reason": redact(verdict.reason)}
            log.warning("%s: %s; retry %d in %.1fs", label, notice["reason"], attempt + 1, wait)
            if on_event:
                on_event(notice)
            time.sleep(wait)
    raise AssertionError("unreachable")

