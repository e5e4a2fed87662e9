"""SQLite metadata through sqlite-utils: WAL mode and a busy timeout so engines and CLIs can share it."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from pathlib import Path

from store.errors import StoreError
from store.lean_sqlite import sqlite_utils
from store.paths import db_path

_SCHEMA: dict[str, tuple[dict[str, type], str]] = {
    "results": ({"key": str, "kind": str, "status": str, "file": str, "sha256": str, "bytes": int,
                 "inputs": str, "meta": str, "created": float, "updated": float, "seconds": float}, "key"),
}

_local = threading.local()


def connect(path: Path | None = None) -> sqlite_utils.Database:
    """A per-thread connection (sqlite3 connections must not cross threads) with WAL and a busy timeout.

    A new database is created 0600 (its WAL and shared-memory files take the same mode); a damaged,
    unreadable or misplaced one is a one-line `StoreError` (`store_error`)."""
    path = path or db_path()
    cache: dict[str, sqlite_utils.Database] = _local.__dict__.setdefault("dbs", {})
    key = str(path)
    if key not in cache:
        if path.is_dir():
            raise StoreError(f"{path} is a directory, not the store's database",
                             "move it away, or set DIFFLENS_HOME to another directory")
        try:
            with contextlib.suppress(FileExistsError):
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=30000")
            db = sqlite_utils.Database(conn)
            ensure_schema(db)
        except (sqlite3.Error, OSError) as exc:
            raise store_error(exc, path) from None
        cache[key] = db
    return cache[key]


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


def ensure_schema(db: sqlite_utils.Database) -> None:
    for name, (columns, pk) in _SCHEMA.items():
        if not db[name].exists():
            try:
                db.table(name).create(columns, pk=pk, if_not_exists=True)
            except sqlite3.OperationalError:
                time.sleep(0.05)
                db.table(name).create(columns, pk=pk, if_not_exists=True)
    db.table("results").create_index(["kind"], if_not_exists=True)


def columns(table: str) -> dict[str, type]:
    """The declared columns of a store table."""
    return dict(_SCHEMA[table][0])


def register_table(name: str, columns: dict[str, type], pk: str) -> None:
    """Let other store modules (sessions, jobs) declare their tables before first use."""
    _SCHEMA[name] = (columns, pk)
