"""Typed reads of JSON params: wrong types become one-line `UserError`s, not tracebacks."""

from __future__ import annotations

from typing import Any, TypeVar

from engine.errors import UserError

T = TypeVar("T")


def get(params: dict[str, Any], name: str, kind: type[T], default: T | None = None, *,
        required: bool = False) -> T:
    """`params[name]` checked to be of `kind` (ints accepted for floats; bools never for numbers)."""
    if name not in params or params[name] is None:
        if required:
            raise UserError(f"missing parameter {name!r}", f"pass {name}")
        return default  # type: ignore[return-value]
    value = params[name]
    ok = isinstance(value, kind) and not (kind in (int, float) and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if not ok:
        raise UserError(f"parameter {name!r} must be {kind.__name__}, got {type(value).__name__}",
                        f"pass {name} as a {kind.__name__}")
    return value  # type: ignore[return-value]


def get_list(params: dict[str, Any], name: str, item: type[T], default: list[T] | None = None) -> list[T] | None:
    value = params.get(name)
    if value is None:
        return default
    if not isinstance(value, list) or not all(isinstance(v, item) and not isinstance(v, bool) for v in value):
        raise UserError(f"parameter {name!r} must be a list of {item.__name__}",
                        f"pass {name} as a JSON list of {item.__name__}")
    return value
