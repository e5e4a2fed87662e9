"""Errors a user can act on: each names the problem and the fix in one line."""

from __future__ import annotations

from store.errors import ActionableError


class UserError(ActionableError):
    """Bad input or environment; shown as one line (`problem — fix`), never as a traceback."""


class JobCancelled(Exception):
    """Raised inside a job at the next batch boundary after `cancel` was requested."""


class Ungraded(Exception):
    """A judge gave no usable verdict for one item (garbage reply, timeout, rate limit after the retries).

    Caught per item: the item is reported "ungraded" with this reason, the rest of the report goes on."""
