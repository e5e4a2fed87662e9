"""The one error type users can act on, defined in the lowest room so every room can raise it."""

from __future__ import annotations

import logging

log = logging.getLogger("difflens.store")

MAX_PROBLEM_CHARS = 600  # a problem quoting someone's input (a name list, a file's bytes) is cut to this


def _one_line(text: str) -> str:
    """`text` on one line and at most `MAX_PROBLEM_CHARS` long, however much input it quotes."""
    text = text.replace("\r", " ").replace("\n", " ")
    return text if len(text) <= MAX_PROBLEM_CHARS else f"{text[:MAX_PROBLEM_CHARS]}… ({len(text):,} characters)"


class ActionableError(Exception):
    """Shown as one line, `problem — fix`, never as a traceback (each part bounded: `_one_line`)."""

    def __init__(self, problem: str, fix: str = "") -> None:
        self.problem = _one_line(problem)
        self.fix = _one_line(fix)
        problem, fix = self.problem, self.fix
        super().__init__(f"{problem} — {fix}" if fix else problem)


class StoreError(ActionableError):
    """The store cannot do what was asked (disk full, unwritable home, damaged database)."""


def warn_skipped(what: str, exc: ActionableError) -> None:
    """A reader met a bad row: say so in one line and go on with the rest (one bad row never hides the others)."""
    log.warning("warning: skipped %s: %s", what, exc.problem)
