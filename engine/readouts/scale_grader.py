"""LLM choice of the best Patchscope scale, as a `ScaleGrader` built on any `complete(prompt) -> str`.

The grader sees every scale's tokens for one cell, names the scale whose tokens are most semantically
coherent and the coherent subset of them ("selected tokens"). An unparseable reply returns scale NaN,
which `patchscope` reports as an ungraded cell (never silently replaced by the offline criterion).
`reference_scale_grader` is the reference's own grader (`--protocol paper`): its prompt and its tournament.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from engine.errors import Ungraded
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


# The reference's Patchscope grader (`--protocol paper`; diffing-toolkit src/diffing/utils/graders/
# patch_scope_grader.py): its system prompt with worked examples (passed in), at most `MAX_GROUP` scales per call,
# winners of each group advancing until one call picks among at most MAX_GROUP; a reply without a scale of the
# group is asked again, `TRIES` calls in all.
MAX_GROUP = 10
TRIES = 3
_ARTIFACT_CHARS = set(".,;:!?()[]{}\"'-_/\\|@#$%^&*+=<>~`")
_BEST_REFERENCE = re.compile(r"^\s*best_scaler\s*:\s*([-+]?[0-9]*\.?[0-9]+)\s*$", re.IGNORECASE | re.MULTILINE)
_TOKENS_REFERENCE = re.compile(r"^\s*top_tokens\s*:\s*(.+)$", re.IGNORECASE | re.MULTILINE)
SystemComplete = Callable[..., str]
"""`complete(prompt, system=...) -> str` (a `engine.judges.client.JudgeClient`)."""


def _without_artifacts(tokens: list[str]) -> list[str]:
    """The reference's `_remove_artifacts`: punctuation-only tokens and identity-prompt arrows dropped."""
    kept = []
    for token in tokens:
        bare = token.strip()
        if not (bare and set(bare) <= _ARTIFACT_CHARS) and "->" not in bare and "=>" not in bare:
            kept.append(token)
    return kept


def reference_scale_prompt(entries: dict[float, list[str]]) -> str:
    """The reference's user prompt for one group (`_build_user_prompt`): each scale's tokens quoted, scales whose
    tokens are all artifacts left out of the listing but not of `[SCALES]`."""
    scales = sorted(entries)
    lines = ["[TOKENS PER SCALE]"]
    for scale in scales:
        shown = [t for t in _without_artifacts(entries[scale]) if t]
        if shown:
            lines += [f"SCALE: {scale:.1f}", "  " + ", ".join(f'"{t}"' for t in shown)]
    lines += ["", "[SCALES]", ", ".join(f"{s:.1f}" for s in scales), "", "[OUTPUT FORMAT]",
              "BEST_SCALER: <number>\nTOP_TOKENS: token1 | token2 | ... | tokenK"]
    return "\n".join(lines)


def parse_reference_reply(text: str) -> tuple[float, list[str]] | None:
    """(scale rounded to one decimal, tokens) from the first BEST_SCALER / TOP_TOKENS lines; None without a scale."""
    best = _BEST_REFERENCE.search(text)
    if best is None:
        return None
    chosen = _TOKENS_REFERENCE.search(text)
    tokens = [t.strip() for t in chosen.group(1).split("|")] if chosen else []
    return round(float(best.group(1)), 1), [t for t in tokens if t]


def reference_scale_grader(complete: SystemComplete, system: str) -> ScaleGrader:
    """The reference's tournament as a `ScaleGrader`: scales rounded to one decimal, groups of at most
    `MAX_GROUP` in scale order, each group's winner advancing; the last call (over the survivors, or the only
    scale) also selects the coherent tokens. A group whose replies never name one of its scales raises `Ungraded`."""
    def choose(entries: dict[float, list[str]]) -> tuple[float, list[str]]:
        prompt = reference_scale_prompt(entries)
        for _ in range(TRIES):
            parsed = parse_reference_reply(complete(prompt, system=system))
            if parsed is not None and parsed[0] in entries:
                return parsed
        raise Ungraded(f"the judge named none of the scales {', '.join(f'{s:.1f}' for s in sorted(entries))} "
                       f"in {TRIES} replies")

    def grade(scale_tokens: list[tuple[float, list[str]]]) -> tuple[float, list[str]]:
        tokens = {round(float(s), 1): list(t) for s, t in scale_tokens}
        alive = sorted(tokens)
        while len(alive) > MAX_GROUP:
            alive = [choose({s: tokens[s] for s in alive[i:i + MAX_GROUP]})[0]
                     for i in range(0, len(alive), MAX_GROUP)]
        return choose({s: tokens[s] for s in alive})
    return grade
