"""Typed JSON records: each method's params and its result are frozen dataclasses whose fields say the JSON types.

`from_json` checks a JSON object against the field types the way every op needs them checked (ints accepted for
floats, bools never for numbers, a `Literal` only one of its choices, nested records and lists of them parsed in
turn); params are also held to request bounds (no NaN, ±inf or absurd magnitudes, counts between 1 and a bound,
lists of at most `MAX_LIST_ITEMS`), so that bad input becomes one `ParamsError` (problem + fix) before anything
loads or is cached. Results (`engine.protocol.results`) are parsed by the same code without the request bounds.
Unknown keys are ignored; a null value means "not given".
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, Self

from store.errors import ActionableError

MAX_MAGNITUDE = 1e6   # no strength, scale, temperature or factor difflens reads comes near this
MAX_COUNT = 1_000_000
MAX_LIST_ITEMS = 100_000  # items of any list param (layers, texts, prompts, pairs): far past any real use
_MOST = "most"
_INDEX = "index"
KEY = "key"  # field metadata: the JSON key, where it differs from the field's name (a result's `summary`)
INT_RANGE = range(-(2**63), 2**63)  # what SQLite, torch seeds and JSON peers hold


class ParamsError(ActionableError):
    """Params of the wrong type or size; the engine answers it as a user error (problem — fix)."""


def count(default: int | None, most: int = MAX_COUNT) -> Any:
    """A count field (texts, tokens, samples): when given, an int between 1 and `most`."""
    return dataclasses.field(default=default, metadata={_MOST: most})


def index(default: int | str | None) -> Any:
    """An index field (a layer, a position): when given as an int, 0 or more (-1 is not "the last" here)."""
    return dataclasses.field(default=default, metadata={_INDEX: True})


def choices(kind: Any) -> tuple[str, ...]:
    """The choices of a `Literal` type (or of the `Literal` in `X | None`), in the order written: the one list that
    the params validator, typer's choices and the workbench's cycles read."""
    options = [a for a in typing.get_args(kind) if a is not type(None)] if _is_union(kind) else [kind]
    return tuple(str(c) for option in options if typing.get_origin(option) is Literal for c in typing.get_args(option))


@dataclasses.dataclass(frozen=True, kw_only=True)
class JsonRecord:
    """Base of params and results: a frozen dataclass read from a JSON object field by field."""

    BOUNDED: ClassVar[bool] = False  # hold numbers, counts and lists to the request bounds (params do)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        """The record named by a JSON object, each field checked against its type."""
        if not isinstance(data, Mapping):
            raise ParamsError(f"{cls.__name__} must be a JSON object, got {type(data).__name__}",
                              f"pass {cls.__name__} as a JSON object")
        hints = _hints(cls)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = data.get(f.metadata.get(KEY, f.name))
            if raw is None:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise ParamsError(f"missing parameter {f.name!r}", f"pass {f.name}")
                continue
            values[f.name] = checked(f.name, hints[f.name], raw, cls.BOUNDED)
            most = f.metadata.get(_MOST)
            if most is not None:
                _check_count(f.name, values[f.name], most)
            if f.metadata.get(_INDEX) and isinstance(values[f.name], int) and values[f.name] < 0:
                raise ParamsError(f"{f.name} must be 0 or more, got {values[f.name]}",
                                  f"pass a {f.name} counted from 0 (the first)")
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        """The record as JSON, without the fields left out (None)."""
        return {f.metadata.get(KEY, f.name): _json(value) for f in dataclasses.fields(self)
                if (value := getattr(self, f.name)) is not None}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Params(JsonRecord):
    """Base of every method's params."""

    BOUNDED: ClassVar[bool] = True


def _json(value: Any) -> Any:
    if isinstance(value, JsonRecord):
        return value.to_json()
    if isinstance(value, list):
        return [_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    return value


_HINTS: dict[type[JsonRecord], dict[str, Any]] = {}


def _is_union(hint: Any) -> bool:
    return isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union


def _name(kind: Any) -> str:
    if typing.get_origin(kind) is Literal:
        return " or ".join(repr(c) for c in typing.get_args(kind))
    return getattr(kind, "__name__", str(kind))


def _hints(cls: type[JsonRecord]) -> dict[str, Any]:
    """The field types of `cls` (resolved once per class)."""
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def checked(name: str, hint: Any, value: Any, bounded: bool = True) -> Any:
    """`value` checked to be of the (non-None part of the) type `hint`; `bounded`: held to the request bounds."""
    if hint is object or hint is Any:
        return value
    options = [a for a in typing.get_args(hint) if a is not type(None)] if _is_union(hint) else [hint]
    if len(options) > 1:
        for option in options:
            if _matches(value, option):
                return checked(name, option, value, bounded)
        kinds = " or ".join(_name(option) for option in options)
        raise ParamsError(f"parameter {name!r} must be {kinds}, got {type(value).__name__}",
                          f"pass {name} as a {kinds}")
    kind = options[0]
    origin = typing.get_origin(kind)
    if origin is Literal:
        if value not in typing.get_args(kind) or isinstance(value, bool):
            raise ParamsError(f"parameter {name!r} must be {_name(kind)}, got {str(value)[:40]!r}",
                              f"pass {name} as one of {', '.join(map(str, typing.get_args(kind)))}")
        return value
    if origin is list:
        return _checked_list(name, typing.get_args(kind)[0], value, bounded)
    if origin is dict:
        if not isinstance(value, dict):
            raise ParamsError(f"parameter {name!r} must be a JSON object, got {type(value).__name__}",
                              f"pass {name} as a JSON object")
        item = typing.get_args(kind)[1]
        return {str(k): checked(name, item, v, bounded) for k, v in value.items()}
    if isinstance(kind, type) and issubclass(kind, JsonRecord):
        return kind.from_json(value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not _is(value, kind):
        raise ParamsError(f"parameter {name!r} must be {kind.__name__}, got {type(value).__name__}",
                          f"pass {name} as a {kind.__name__}")
    if bounded:
        _check_number(name, value)
    return value


def _matches(value: Any, kind: Any) -> bool:
    """Whether `value` has the JSON shape of `kind` (its items and bounds are checked after)."""
    origin = typing.get_origin(kind)
    if origin is Literal:
        return value in typing.get_args(kind) and not isinstance(value, bool)
    if origin in (list, dict):
        return isinstance(value, origin)
    if isinstance(kind, type) and issubclass(kind, JsonRecord):
        return isinstance(value, Mapping)
    return _is(value, kind) or (kind is float and _is(value, int))


def _is(value: Any, kind: type) -> bool:
    return isinstance(value, kind) and not (kind in (int, float) and isinstance(value, bool))


def _checked_list(name: str, item: Any, value: Any, bounded: bool) -> list[Any]:
    if bounded and isinstance(value, list) and len(value) > MAX_LIST_ITEMS:
        raise ParamsError(f"parameter {name!r} has {len(value):,} items, more than {MAX_LIST_ITEMS:,}",
                          f"pass at most {MAX_LIST_ITEMS:,} {name}")
    if isinstance(item, type) and not issubclass(item, JsonRecord) and item not in (Any, object):
        if not isinstance(value, list) or not all(_is(v, item) for v in value):
            raise ParamsError(f"parameter {name!r} must be a list of {item.__name__}",
                              f"pass {name} as a JSON list of {item.__name__}")
        if bounded:
            for v in value:
                _check_number(name, v)
        return value
    if not isinstance(value, list):
        raise ParamsError(f"parameter {name!r} must be a list of {_name(item)}", f"pass {name} as a JSON list")
    return [checked(name, item, v, bounded) for v in value]


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
