"""LLM choice of the best Patchscope scale, as a `ScaleGrader` built on any `complete(prompt) -> str`.

The grader sees every scale's tokens for one cell, names the scale whose tokens are most semantically
coherent and the coherent subset of them ("selected tokens"). An unparseable reply returns scale NaN,
which `patchscope` reports as an ungraded cell (never silently replaced by the offline criterion).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from engine.readouts.filters import is_trivial_token
from engine.readouts.patchscope import ScaleGrader

_BEST = re.compile(r"^\s*best_scale\s*:\s*([-+]?\d*\.?\d+)\s*$", re.IGNORECASE | re.MULTILINE)
_TOKENS = re.compile(r"^\s*selected_tokens\s*:\s*(.*)$", re.IGNORECASE | re.MULTILINE)


def scale_prompt(scale_tokens: list[tuple[float, list[str]]]) -> str:
    """One prompt listing each scale's (non-trivial) tokens."""
    lines = []
    for scale, tokens in scale_tokens:
        shown = [t for t in tokens if not is_trivial_token(t) and "->" not in t]
        if shown:
            lines.append(f"SCALE {scale:g}: " + ", ".join(repr(t) for t in shown))
    return (
        "A vector was patched into a language model at several strengths (scales); for each scale you see "
        "the tokens the model then predicted.\nPick the single scale whose tokens are most semantically "
        "coherent as a group (prefer the scale with more coherent tokens when several are similar), then "
        "list only the coherent tokens of that scale, copied exactly. Ignore tokenizer markers and casing; "
        "never invent tokens.\n\n" + "\n".join(lines)
        + "\n\nEnd your reply with exactly two lines:\nBEST_SCALE: <number>\nSELECTED_TOKENS: tok1 | tok2 | ..."
    )


def parse_scale_reply(text: str) -> tuple[float, list[str]]:
    """(scale, selected tokens) from a reply; scale is NaN when the reply names none."""
    best = _BEST.findall(text)
    chosen = _TOKENS.findall(text)
    tokens = [t.strip().strip("'\"") for t in chosen[-1].split("|")] if chosen else []
    return (float(best[-1]) if best else float("nan")), [t for t in tokens if t]


def llm_scale_grader(complete: Callable[[str], str]) -> ScaleGrader:
    """A `ScaleGrader` asking `complete` once per cell."""
    def grade(scale_tokens: list[tuple[float, list[str]]]) -> tuple[float, list[str]]:
        return parse_scale_reply(complete(scale_prompt(scale_tokens)))
    return grade
