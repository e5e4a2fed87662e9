"""Lists of numbers as people type them (`3,5,9`, `6-12`, a mix): counted before anything is expanded.

`--layers 1-999999999` must be one line naming the bound, not a list of a billion ints built first and
checked after; the same parser serves every place a user types such a list (CLI options, workbench inputs).
"""

from __future__ import annotations

from engine.protocol.params import MAX_LIST_ITEMS, ParamsError

MAX_DIGITS = 9      # no layer, position or count difflens reads has more
MAX_LAYERS = 1024   # layers a user may name at once: several times the deepest decoder there is


def int_list(text: str, name: str, most: int = MAX_LIST_ITEMS) -> list[int]:
    """The numbers `text` names (`3,5,9`, `6-12` or a mix, a lone `-1` as itself), at most `most` of them;
    `ParamsError` naming `name`, the bound and the fix otherwise."""
    example = f"write e.g. {name} 3,5,9 or {name} 6-12"
    spans: list[tuple[int, int]] = []
    total = 0
    for part in text.split(","):
        lo, sep, hi = part.strip().partition("-")
        first, last = (_number(lo, name, text, example), _number(hi, name, text, example)) if sep and lo \
            else (_number(part, name, text, example),) * 2
        if last < first:
            raise ParamsError(f"{name} {first}-{last} runs backwards", f"write it as {last}-{first}")
        total += last - first + 1
        if total > most:
            raise ParamsError(f"{name} names more than {most:,} numbers", f"name at most {most:,}; {example}")
        spans.append((first, last))
    return [i for first, last in spans for i in range(first, last + 1)]


def span(text: str, name: str) -> list[int]:
    """`FIRST-LAST` (e.g. `0-8`) as [first, last], never expanded; `ParamsError` naming `name` otherwise."""
    example = f"{name} takes FIRST-LAST (e.g. 0-8)"
    first, sep, last = text.partition("-")
    if not (sep and first.strip() and last.strip()) or first.strip().startswith("-"):
        raise ParamsError(f"cannot read {name} {text[:60]!r}", example)
    low, high = _number(first, name, text, example), _number(last, name, text, example)
    if high < low:
        raise ParamsError(f"{name} {low}-{high} runs backwards", f"write it as {high}-{low}")
    return [low, high]


def _number(text: str, name: str, whole: str, example: str) -> int:
    digits = text.strip()
    if not digits.removeprefix("-").isdecimal() or len(digits) > MAX_DIGITS + 1 or not digits.isascii():
        raise ParamsError(f"cannot read {name} {whole[:60]!r}", example)
    return int(digits)
