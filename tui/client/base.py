"""The door to the engine: what the TUI and the CLI may ask of it, whatever the transport."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from engine.protocol import wire
from engine.protocol.methods import Method
from engine.protocol.params import Params, ParamsError
from engine.protocol.results import Result
from tui.client.errors import EngineError

P = TypeVar("P", bound=Params)
R = TypeVar("R", bound=Result)
EventCallback = Callable[[dict[str, Any]], None]
NotificationCallback = Callable[[str, dict[str, Any]], None]


class EngineClient(ABC):
    """An open connection to one engine. Every method may raise `EngineUnavailable` (cannot reach the
    engine, or the connection closed); engine-side failures raise `EngineError`, and bad input the
    engine's `UserError` as `UserFacingError` (`problem`, `fix`)."""

    description: str = "engine"

    # ---- typed: a method's params in, its result out (what the workbench and the CLI use) ----

    async def ask(self, method: Method[P, R], params: P) -> R:
        """A short op's (or a built-in's) result, read into the method's result type."""
        return read_result(method, await self.call(method.name, params.to_json()))

    async def ask_job(self, method: Method[P, R], params: P, on_event: EventCallback | None = None) -> R:
        """A long op's result (as `run_job`), read into the method's result type."""
        return read_result(method, await self.run_job(method.name, params.to_json(), on_event))

    # ---- the wire: method names and JSON objects (sessions record these; replays answer them) ----

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


def read_result(method: Method[Any, R], raw: Mapping[str, Any]) -> R:
    """The engine's JSON answer as the method's result; an answer of the wrong shape is an `EngineError`."""
    try:
        return method.result.from_json(raw)
    except ParamsError as exc:
        raise EngineError(f"{method.name} answered in an unexpected shape: {exc.problem}", wire.INTERNAL_ERROR
                          ) from None
