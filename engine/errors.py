"""Errors a user can act on: each names the problem and the fix in one line."""

from __future__ import annotations

from store.errors import ActionableError


class UserError(ActionableError):
    """Bad input or environment; shown as one line (`problem — fix`), never as a traceback."""


class JobCancelled(Exception):
    """Raised inside a job at the next batch boundary after `cancel` was requested."""
