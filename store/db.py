"""SQLite metadata through sqlite-utils: WAL mode and a busy timeout so engines and CLIs can share it."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from pathlib import Path

from store.errors import StoreError
from store.lean_sqlite import sqlite_utils
from store.paths import db_path
from store.schema import migrate

_local = threading.local()


def connect(path: Path | None = None) -> sqlite_utils.Database:
    """A per-thread connection (sqlite3 connections must not cross threads) with WAL and a busy timeout.

    A new database is created 0600 (its WAL and shared-memory files take the same mode) and an older one is
    migrated (`store.schema`), once per connection, so every table of the store exists on what this returns; a
    damaged, unreadable, misplaced or newer one is a one-line `StoreError` (`store_error`)."""
    path = path or db_path()
    cache: dict[str, sqlite_utils.Database] = _local.__dict__.setdefault("dbs", {})
    key = str(path)
    if key not in cache:
        if path.is_dir():
            raise StoreError(f"{path} is a directory, not the store's database",
                             "move it away, or set DIFFLENS_HOME to another directory")
        try:
            cache[key] = sqlite_utils.Database(_open(path))
        except (sqlite3.Error, OSError) as exc:
            raise store_error(exc, path) from None
    return cache[key]


def _open(path: Path) -> sqlite3.Connection:
    """An autocommit connection in WAL mode with the schema up to date; closed again if any of that fails."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA busy_timeout=30000")
        migrate(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn


_FULL_OR_READ_ONLY = ("disk i/o error", "database or disk is full", "readonly database", "unable to open database",
                      "read-only file system", "permission denied")


def store_error(exc: BaseException, path: Path | None = None) -> StoreError:
    """The one-line problem + fix for a fault of the store's database or its directory."""
    path = path or db_path()
    text = str(exc).lower()
    if isinstance(exc, sqlite3.DatabaseError) and ("not a database" in text or "malformed" in text):
        return StoreError(f"the store's database {path} is damaged or truncated ({exc})",
                          f"move it aside (mv {path} {path}.damaged) to start a fresh one, or restore a backup")
    if any(s in text for s in _FULL_OR_READ_ONLY) or isinstance(exc, PermissionError):
        return StoreError(f"cannot write the store's database {path} ({exc}): the disk is full or read-only",
                          "free space or point DIFFLENS_HOME at a writable disk (or fix its permissions); "
                          "nothing was half-written")
    return StoreError(f"the store's database {path} failed ({exc})", "check DIFFLENS_HOME and the disk")
