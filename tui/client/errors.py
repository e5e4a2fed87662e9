"""Typed engine errors: what the client raises, built from the JSON-RPC error objects the engine sends."""

from __future__ import annotations

from typing import Any

from engine.protocol import wire


class EngineError(Exception):
    """An error answered by the engine (or, for subclasses, met on the way to it)."""

    def __init__(self, message: str, code: int = wire.INTERNAL_ERROR, data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


class UserFacingError(EngineError):
    """The engine's `UserError`: bad input with a one-line fix; `str()` is `problem — fix`."""

    def __init__(self, problem: str, fix: str = "", code: int = wire.USER_ERROR,
                 data: dict[str, Any] | None = None) -> None:
        super().__init__(f"{problem} — {fix}" if fix else problem, code,
                         data if data is not None else {"problem": problem, "fix": fix})
        self.problem = problem
        self.fix = fix


class EngineUnavailable(EngineError):
    """No engine could be reached, or the connection to it closed (the engine died or the link dropped)."""

    def __init__(self, message: str, data: dict[str, Any] | None = None) -> None:
        super().__init__(message, wire.UNAVAILABLE, data)


class JobCancelledError(EngineError):
    """The job was cancelled (by this client or another) before it finished."""

    def __init__(self, message: str = "job cancelled", data: dict[str, Any] | None = None) -> None:
        super().__init__(message, wire.JOB_CANCELLED, data)


def error_from(obj: Any) -> EngineError:
    """The typed exception for a JSON-RPC error object; errors carrying `problem`/`fix` are user-facing."""
    if not isinstance(obj, dict):
        return EngineError(f"malformed error from the engine: {obj!r}")
    code = obj.get("code", wire.INTERNAL_ERROR)
    message = str(obj.get("message", "engine error"))
    data = obj.get("data") if isinstance(obj.get("data"), dict) else None
    if code == wire.JOB_CANCELLED:
        return JobCancelledError(message, data)
    if data is not None and isinstance(data.get("problem"), str):
        return UserFacingError(data["problem"], str(data.get("fix", "")), code, data)
    return EngineError(message, code if isinstance(code, int) else wire.INTERNAL_ERROR, data)
