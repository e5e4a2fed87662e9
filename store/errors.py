"""The one error type users can act on, defined in the lowest room so every room can raise it."""

from __future__ import annotations

import logging

log = logging.getLogger("difflens.store")


class ActionableError(Exception):
    """Shown as one line, `problem — fix`, never as a traceback."""

    def __init__(self, problem: str, fix: str = "") -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem} — {fix}" if fix else problem)


class StoreError(ActionableError):
    """The store cannot do what was asked (disk full, unwritable home, damaged database)."""


def warn_skipped(what: str, exc: ActionableError) -> None:
    """A reader met a bad row: say so in one line and go on with the rest (one bad row never hides the others)."""
    log.warning("warning: skipped %s: %s", what, exc.problem)
