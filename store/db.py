"""SQLite metadata through sqlite-utils: WAL mode and a busy timeout so engines and CLIs can share it."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import sqlite_utils

from store.paths import db_path

_SCHEMA: dict[str, tuple[dict[str, type], str]] = {
    "results": ({"key": str, "kind": str, "status": str, "file": str, "sha256": str, "bytes": int,
                 "inputs": str, "meta": str, "created": float, "updated": float, "seconds": float}, "key"),
}

_local = threading.local()


def connect(path: Path | None = None) -> sqlite_utils.Database:
    """A per-thread connection (sqlite3 connections must not cross threads) with WAL and a busy timeout."""
    path = path or db_path()
    cache: dict[str, sqlite_utils.Database] = _local.__dict__.setdefault("dbs", {})
    key = str(path)
    if key not in cache:
        conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA busy_timeout=30000")
        db = sqlite_utils.Database(conn)
        ensure_schema(db)
        cache[key] = db
    return cache[key]


def ensure_schema(db: sqlite_utils.Database) -> None:
    for name, (columns, pk) in _SCHEMA.items():
        if not db[name].exists():
            try:
                db[name].create(columns, pk=pk, if_not_exists=True)
            except sqlite3.OperationalError:
                time.sleep(0.05)
                db[name].create(columns, pk=pk, if_not_exists=True)
    db["results"].create_index(["kind"], if_not_exists=True)


def columns(table: str) -> dict[str, type]:
    """The declared columns of a store table."""
    return dict(_SCHEMA[table][0])


def register_table(name: str, columns: dict[str, type], pk: str) -> None:
    """Let other store modules (sessions, jobs) declare their tables before first use."""
    _SCHEMA[name] = (columns, pk)
