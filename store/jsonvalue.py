"""JSON that crosses a trust boundary: parsed with a nesting cap, no NaN/Infinity, no whole number beyond 64 bits
(SQLite's and torch's limit) and no lone surrogate (text no file, database or terminal can hold); written strict.

Python's `json` accepts `NaN`/`Infinity` (which strict parsers reject) and recurses once per nesting level, so a
line nested 200,000 deep ends in a RecursionError rather than an answer. Every reader of someone else's JSON (a
session file, a stored row, a protocol line) goes through `loads`, and every writer of JSON for other programs
through `dumps`, so both rules live in one place.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_DEPTH = 64
INT_RANGE = range(-(2**63), 2**63)
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class JsonValueError(ValueError):
    """Not acceptable JSON: a syntax error, a non-finite or over-64-bit number, a lone surrogate, or nesting deeper
    than `MAX_DEPTH`."""


def _no_constant(name: str) -> Any:
    raise JsonValueError(f"{name} is not a JSON number")


def loads(data: bytes | str, max_depth: int = MAX_DEPTH) -> Any:
    """Parse `data`; raises `JsonValueError` (one line) for anything a strict parser would not return."""
    try:
        value = json.loads(data, parse_constant=_no_constant)
    except JsonValueError:
        raise
    except RecursionError:
        raise JsonValueError(f"nested deeper than {max_depth} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise JsonValueError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    _check(value, max_depth)
    return value


def _check(value: Any, max_depth: int) -> None:
    """Depth, numbers and text of a parsed value, without recursion."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise JsonValueError("a number is too large to be finite")
        if isinstance(item, int) and item not in INT_RANGE:
            raise JsonValueError(f"a whole number does not fit in 64 bits ({str(item)[:24]}…)")
        if isinstance(item, str) and _LONE_SURROGATE.search(item):
            raise JsonValueError(f"text holds a lone surrogate ({item[:24].encode('unicode_escape').decode()}…)")
        if isinstance(item, dict):
            stack.extend((k, depth) for k in item)
        if isinstance(item, dict | list):
            if depth >= max_depth:
                raise JsonValueError(f"nested deeper than {max_depth} levels")
            stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))


def first_non_finite(value: Any, where: str = "") -> str | None:
    """The dotted path of the first NaN/±Infinity inside `value`, or None when every number is finite."""
    if isinstance(value, float) and not math.isfinite(value):
        return where or "value"
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list | tuple) else ()
    for key, item in items:
        if (found := first_non_finite(item, f"{where}.{key}" if where else str(key))) is not None:
            return found
    return None


def finite(value: Any) -> Any:
    """`value` with every NaN/±Infinity replaced by None (JSON's null), for output to strict parsers."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """`json.dumps` that never writes NaN/Infinity (non-finite numbers become null)."""
    try:
        return json.dumps(value, allow_nan=False, **kwargs)
    except ValueError:
        return json.dumps(finite(value), allow_nan=False, **kwargs)
