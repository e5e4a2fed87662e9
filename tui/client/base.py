"""The door to the engine: what the TUI and the CLI may ask of it, whatever the transport."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any

EventCallback = Callable[[dict[str, Any]], None]
NotificationCallback = Callable[[str, dict[str, Any]], None]


class EngineClient(ABC):
    """An open connection to one engine. Every method may raise `EngineUnavailable` (cannot reach the
    engine, or the connection closed); engine-side failures raise `EngineError`, and bad input the
    engine's `UserError` as `UserFacingError` (`problem`, `fix`)."""

    description: str = "engine"

    @abstractmethod
    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run a short op (or a built-in method) and return its result. For a long op the result is
        `{"job": id}`: use `run_job` to wait for it."""

    @abstractmethod
    async def run_job(self, method: str, params: dict[str, Any] | None = None,
                      on_event: EventCallback | None = None) -> dict[str, Any]:
        """Submit a long op, hand each progress/partial event (`{"job", "type", ...}`) to `on_event`, and
        return the result. Raises the job's error (`UserFacingError`, `JobCancelledError` if it was
        cancelled, `EngineError`). If the awaiting task is cancelled, the job is cancelled too."""

    @abstractmethod
    async def submit(self, method: str, params: dict[str, Any] | None = None) -> str:
        """Start a long op and return its job id at once; follow it through `on_notification`."""

    @abstractmethod
    async def cancel(self, job_id: str) -> None:
        """Ask the engine to stop a job at its next batch (`EngineError` JOB_NOT_FOUND if unknown)."""

    @abstractmethod
    def on_notification(self, callback: NotificationCallback) -> None:
        """Call `callback(method, params)` for every notification (`job.progress`, `job.done`, ...)."""

    @abstractmethod
    async def close(self) -> None:
        """Close the connection (a private engine exits; a shared engine's jobs run on). Idempotent."""


ClientFactory = Callable[[], Awaitable[EngineClient]]
