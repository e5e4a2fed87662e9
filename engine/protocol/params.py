"""Typed params: each method's params are a frozen dataclass whose fields say the JSON types it takes.

`from_json` checks a request's params against the field types the way every op needs them checked (ints
accepted for floats, bools never for numbers, no NaN, ±inf or absurd magnitudes, counts between 1 and a
bound, lists of at most `MAX_LIST_ITEMS`), so that bad input becomes one `ParamsError` (problem + fix)
before anything loads or is cached.
Unknown keys are ignored; a null value means "not given".
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, Self

from store.errors import ActionableError

MAX_MAGNITUDE = 1e6   # no strength, scale, temperature or factor difflens reads comes near this
MAX_COUNT = 1_000_000
MAX_LIST_ITEMS = 100_000  # items of any list param (layers, texts, prompts, pairs): far past any real use
_MOST = "most"
_INDEX = "index"
INT_RANGE = range(-(2**63), 2**63)  # what SQLite, torch seeds and JSON peers hold


class ParamsError(ActionableError):
    """Params of the wrong type or size; the engine answers it as a user error (problem — fix)."""


def count(default: int | None, most: int = MAX_COUNT) -> Any:
    """A count field (texts, tokens, samples): when given, an int between 1 and `most`."""
    return dataclasses.field(default=default, metadata={_MOST: most})


def index(default: int | str | None) -> Any:
    """An index field (a layer, a position): when given as an int, 0 or more (-1 is not "the last" here)."""
    return dataclasses.field(default=default, metadata={_INDEX: True})


@dataclasses.dataclass(frozen=True, kw_only=True)
class Params:
    """Base of every method's params."""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        """The params named by a JSON object, each checked against its field's type."""
        hints = _hints(cls)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = data.get(f.name)
            if raw is None:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise ParamsError(f"missing parameter {f.name!r}", f"pass {f.name}")
                continue
            values[f.name] = checked(f.name, hints[f.name], raw)
            most = f.metadata.get(_MOST)
            if most is not None:
                _check_count(f.name, values[f.name], most)
            if f.metadata.get(_INDEX) and isinstance(values[f.name], int) and values[f.name] < 0:
                raise ParamsError(f"{f.name} must be 0 or more, got {values[f.name]}",
                                  f"pass a {f.name} counted from 0 (the first)")
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        """The params as JSON, without the fields left out (None)."""
        return {f.name: value for f in dataclasses.fields(self) if (value := getattr(self, f.name)) is not None}


_HINTS: dict[type[Params], dict[str, Any]] = {}


def _hints(cls: type[Params]) -> dict[str, Any]:
    """The field types of `cls` (resolved once per class)."""
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def checked(name: str, hint: Any, value: Any) -> Any:
    """`value` checked to be of the (non-None part of the) type `hint`."""
    if hint is object or hint is Any:
        return value
    options = [a for a in typing.get_args(hint) if a is not type(None)] \
        if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union else [hint]
    if len(options) > 1:
        if any(_is(value, option) for option in options):
            return value
        kinds = " or ".join(option.__name__ for option in options)
        raise ParamsError(f"parameter {name!r} must be {kinds}, got {type(value).__name__}",
                          f"pass {name} as a {kinds}")
    kind = options[0]
    if typing.get_origin(kind) is list:
        return _checked_list(name, typing.get_args(kind)[0], value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not _is(value, kind):
        raise ParamsError(f"parameter {name!r} must be {kind.__name__}, got {type(value).__name__}",
                          f"pass {name} as a {kind.__name__}")
    _check_number(name, value)
    return value


def _is(value: Any, kind: type) -> bool:
    return isinstance(value, kind) and not (kind in (int, float) and isinstance(value, bool))


def _checked_list(name: str, item: type, value: Any) -> list[Any]:
    if isinstance(value, list) and len(value) > MAX_LIST_ITEMS:
        raise ParamsError(f"parameter {name!r} has {len(value):,} items, more than {MAX_LIST_ITEMS:,}",
                          f"pass at most {MAX_LIST_ITEMS:,} {name}")
    if not isinstance(value, list) or not all(isinstance(v, item) and not isinstance(v, bool) for v in value):
        raise ParamsError(f"parameter {name!r} must be a list of {item.__name__}",
                          f"pass {name} as a JSON list of {item.__name__}")
    for v in value:
        _check_number(name, float(v) if item is float else v)
    return value


def _check_number(name: str, value: Any) -> None:
    """Every number passes here: NaN, ±inf, absurd float magnitudes and ints past 64 bits are refused before
    anything is cached."""
    if isinstance(value, int) and not isinstance(value, bool) and value not in INT_RANGE:
        raise ParamsError(f"parameter {name!r} does not fit in 64 bits (got {str(value)[:24]}…)",
                          f"pass a {name} between -2**63 and 2**63 - 1")
    if isinstance(value, float) and not (math.isfinite(value) and abs(value) <= MAX_MAGNITUDE):
        raise ParamsError(f"parameter {name!r} must be a finite number of magnitude at most {MAX_MAGNITUDE:g}, "
                          f"got {value!r}", f"pass a sensible {name}")


def _check_count(name: str, value: int, most: int) -> None:
    if value <= 0:
        raise ParamsError(f"{name} must be positive, got {value}", f"pass a positive {name}")
    if value > most:
        raise ParamsError(f"{name} must be at most {most:,}, got {value:,}", f"pass a {name} of at most {most:,}")
