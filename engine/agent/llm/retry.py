"""Retry with exponential backoff for transient LLM failures (429, 5xx, timeouts, dropped connections).

Each backend says which errors are transient and how long the server asked it to wait; the schedule,
the notices and the final one-line error live here once. `sdk_call` is that for the OpenAI and Anthropic
SDKs, which share one generated client shape (`APIStatusError`, `APIConnectionError`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, TypeVar

from engine.agent.llm.base import EventSink
from engine.errors import UserError

T = TypeVar("T")
log = logging.getLogger("difflens.agent.llm")

MAX_WAIT_S = 60.0
FIXES = {401: "check the API key", 403: "check the API key and its permissions",
         404: "check the model name and the base URL",
         400: "check the model name; if the endpoint has no tool calling, pass protocol text"}


@dataclass(frozen=True)
class Transient:
    """How a backend classifies an error: retry it?, why, and the server's Retry-After (seconds) if any."""

    retry: bool
    reason: str
    retry_after_s: float | None = None


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
                                "wait and try again, or check the endpoint and its rate limits") from exc
            wait = backoff_s(attempt, verdict.retry_after_s)
            notice = {"type": "retry", "attempt": attempt + 1, "wait_s": round(wait, 3),
                      "reason": redact(verdict.reason)}
            log.warning("%s: %s; retry %d in %.1fs", label, notice["reason"], attempt + 1, wait)
            if on_event:
                on_event(notice)
            time.sleep(wait)
    raise AssertionError("unreachable")


def _retry_after(exc: Any) -> float | None:
    response = getattr(exc, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def sdk_call(call: Callable[[], T], sdk: ModuleType, *, label: str, max_retries: int,
             on_event: EventSink | None, redact: Callable[[str], str]) -> T:
    """`with_retries` for an OpenAI-shaped SDK: 429, 5xx (529 overloaded) and dropped connections are tried
    again; any other HTTP refusal becomes a one-line `UserError` naming the fix."""

    def classify(exc: Exception) -> Transient:
        if isinstance(exc, sdk.APIStatusError):
            status = exc.status_code
            return Transient(status == 429 or status >= 500, f"HTTP {status}: {exc.message}", _retry_after(exc))
        if isinstance(exc, sdk.APIConnectionError):
            return Transient(True, f"{type(exc).__name__}: {exc}")
        return Transient(False, str(exc))

    try:
        return with_retries(call, classify, label=label, max_retries=max_retries, on_event=on_event, redact=redact)
    except sdk.APIStatusError as exc:
        raise UserError(f"{label} refused the request: HTTP {exc.status_code} {redact(exc.message)}",
                        FIXES.get(exc.status_code, "check the endpoint")) from None
