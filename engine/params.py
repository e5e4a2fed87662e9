"""Typed reads of JSON params: wrong types become one-line `UserError`s, not tracebacks."""

from __future__ import annotations

import math
from typing import Any, TypeVar

from engine.errors import UserError

T = TypeVar("T")
MAX_MAGNITUDE = 1e6   # no strength, scale, temperature or factor difflens reads comes near this


def _checked_number(name: str, value: Any) -> None:
    """Every float param passes here: NaN, ±inf and absurd magnitudes are refused before anything is cached."""
    if isinstance(value, float) and not (math.isfinite(value) and abs(value) <= MAX_MAGNITUDE):
        raise UserError(f"parameter {name!r} must be a finite number of magnitude at most {MAX_MAGNITUDE:g}, "
                        f"got {value!r}", f"pass a sensible {name}")


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
    _checked_number(name, value)
    return value  # type: ignore[return-value]


def get_list(params: dict[str, Any], name: str, item: type[T], default: list[T] | None = None) -> list[T] | None:
    value = params.get(name)
    if value is None:
        return default
    if not isinstance(value, list) or not all(isinstance(v, item) and not isinstance(v, bool) for v in value):
        raise UserError(f"parameter {name!r} must be a list of {item.__name__}",
                        f"pass {name} as a JSON list of {item.__name__}")
    for v in value:
        _checked_number(name, float(v) if item is float else v)
    return value


def get_count(params: dict[str, Any], name: str, default: int, most: int = 1_000_000) -> int:
    """A count (texts, tokens, samples): an int between 1 and `most`."""
    value = get(params, name, int, default)
    if value <= 0:
        raise UserError(f"{name} must be positive, got {value}", f"pass a positive {name}")
    if value > most:
        raise UserError(f"{name} must be at most {most:,}, got {value:,}", f"pass a {name} of at most {most:,}")
    return value
