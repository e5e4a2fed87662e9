"""Errors a user can act on: each names the problem and the fix in one line."""

from __future__ import annotations


class UserError(Exception):
    """Bad input or environment; shown as one line (`problem — fix`), never as a traceback."""

    def __init__(self, problem: str, fix: str = "") -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem} — {fix}" if fix else problem)


class JobCancelled(Exception):
    """Raised inside a job at the next batch boundary after `cancel` was requested."""
