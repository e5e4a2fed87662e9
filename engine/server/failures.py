"""Turning what an op raised or returned into JSON-RPC errors the client can type and show."""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

from engine.errors import JobCancelled
from engine.protocol import wire
from engine.protocol.redact import url_credentials
from store import jsonvalue
from store.db import store_error
from store.errors import ActionableError, StoreError

log = logging.getLogger("difflens.engine")


def error_for(exc: BaseException) -> dict[str, Any]:
    """The JSON-RPC error object for an exception raised by an op (unexpected ones are logged in full)."""
    exc = _store_fault(exc) or exc
    if isinstance(exc, ActionableError):
        problem, fix = url_credentials(exc.problem), url_credentials(exc.fix)
        return wire.error_object(wire.USER_ERROR, f"{problem} — {fix}" if fix else problem,
                                     {"problem": problem, "fix": fix})
    if isinstance(exc, JobCancelled):
        return wire.error_object(wire.JOB_CANCELLED, "job cancelled")
    if isinstance(exc, wire.ProtocolError):
        return wire.error_object(exc.code, exc.message, exc.data)
    log.error("op failed", exc_info=exc)
    return wire.error_object(wire.INTERNAL_ERROR, url_credentials(f"{type(exc).__name__}: {exc}"),
                                 {"type": type(exc).__name__})


def _store_fault(exc: BaseException) -> StoreError | None:
    """SQLite's words for a damaged, full or unwritable store, as the store's own one-line error (the database
    fails first on a full disk: it needs room for its WAL before a result file is written)."""
    return store_error(exc) if isinstance(exc, sqlite3.Error) else None


def checked_result(value: Any) -> dict[str, Any]:
    """`value` if it can travel as one message; else a `ProtocolError` (so the caller gets an error, not
    a dropped connection)."""
    if not isinstance(value, dict):
        raise wire.ProtocolError(wire.INTERNAL_ERROR, f"op returned {type(value).__name__}, not a dict")
    try:
        size = len(jsonvalue.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
    except (TypeError, ValueError) as exc:
        raise wire.ProtocolError(wire.INTERNAL_ERROR, f"op result is not JSON: {exc}") from None
    if size > wire.MAX_MESSAGE_BYTES - 4096:
        raise wire.ProtocolError(wire.MESSAGE_TOO_LARGE,
                                     f"op result is {size} bytes, over the {wire.MAX_MESSAGE_BYTES} limit")
    return value
