"""Every table and index of the store's database, and the migrations that bring an older database up to date.

`connect()` runs `migrate` once per connection: the database's `PRAGMA user_version` counts the migrations it
has had, and each missing one runs once, in its own write transaction, in order. A database from a newer
difflens (a version past the last migration here) is refused rather than written with an older idea of it.

To change the schema, append a migration (never edit a released one: databases out there already ran it) and
make `TABLES` say what the database looks like after it; `tests/store/test_schema.py` checks that a fresh
database and one migrated from before versioning both end up exactly as `TABLES` says.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from store.errors import StoreError


@dataclass(frozen=True)
class Index:
    """An index on some columns of a table, named as sqlite-utils names it (`idx_<table>_<columns>`)."""

    columns: tuple[str, ...]
    unique: bool = False

    def name(self, table: str) -> str:
        return f"idx_{table}_{'_'.join(self.columns)}"


@dataclass(frozen=True)
class Table:
    """A table's columns (Python types: str, int, float), its text primary key and its indexes."""

    columns: dict[str, type]
    pk: str
    indexes: tuple[Index, ...] = ()


RESULTS, IMPORTED, ANSWERS = "results", "imported_results", "answers"
SESSIONS, ACTIONS, NOTES = "sessions", "session_actions", "session_notes"
BOARDS, BOARD_PAIRS = "boards", "board_pairs"

_RESULT_COLUMNS: dict[str, type] = {"key": str, "kind": str, "status": str, "file": str, "sha256": str, "bytes": int,
                                    "inputs": str, "meta": str, "created": float, "updated": float, "seconds": float}

# Version 1: the tables as the per-module "ensure my table" code made them before the store had versions.
_V1: dict[str, Table] = {
    # computed results: one row per content key, its tensors in tensors/<key>.safetensors (store.results)
    RESULTS: Table(_RESULT_COLUMNS, "key", (Index(("kind",)),)),
    # results that came inside someone else's session file, kept apart (store.imported)
    IMPORTED: Table({"id": str, "session": str, **_RESULT_COLUMNS}, "id"),
    # finished answers of engine methods, kept whole (store.answers)
    ANSWERS: Table({"key": str, "method": str, "answer": str, "deps": str, "created": float}, "key"),
    # sessions, their recorded actions and notes (store.sessions)
    SESSIONS: Table({"id": str, "name": str, "created": float, "updated": float, "base": str, "ft": str, "run": str,
                     "ui": str, "origin": str}, "id", (Index(("name",), unique=True),)),
    ACTIONS: Table({"id": str, "session": str, "seq": int, "t": float, "method": str, "kind": str, "params": str,
                    "status": str, "result": str, "error": str, "events": str, "refs": str, "seconds": float}, "id",
                   (Index(("session", "seq"), unique=True),)),
    NOTES: Table({"id": str, "session": str, "seq": int, "t": float, "text": str, "cell": str}, "id",
                 (Index(("session", "seq"), unique=True),)),
    # triage boards and their pairs' outcomes (engine.triage.state)
    BOARDS: Table({"id": str, "name": str, "source": str, "pairs": str, "settings": str, "status": str,
                   "created": float, "updated": float}, "id"),
    BOARD_PAIRS: Table({"key": str, "name": str, "base": str, "ft": str, "adapter": str, "status": str,
                        "score": float, "trace": str, "hypothesis": str, "hypothesis_source": str, "run": str,
                        "error": str, "report": str, "seconds": float, "updated": float}, "key"),
}

_IMPORTED_BY_SESSION = Index(("session",))

# The schema after the last migration: what the store's code reads and writes.
TABLES: dict[str, Table] = {
    **_V1,
    IMPORTED: replace(_V1[IMPORTED], indexes=(_IMPORTED_BY_SESSION,)),
}

_SQL_TYPES = {str: "TEXT", int: "INTEGER", float: "REAL"}


def columns(table: str) -> dict[str, type]:
    """The columns of a store table (a copy: session files are checked against them)."""
    return dict(TABLES[table].columns)


def _create_table(conn: sqlite3.Connection, name: str, table: Table) -> None:
    cols = ", ".join(f'"{col}" {_SQL_TYPES[kind]}{" PRIMARY KEY" if col == table.pk else ""}'
                     for col, kind in table.columns.items())
    conn.execute(f'CREATE TABLE IF NOT EXISTS "{name}" ({cols})')


def _create_index(conn: sqlite3.Connection, table: str, index: Index) -> None:
    cols = ", ".join(f'"{col}"' for col in index.columns)
    conn.execute(f'CREATE {"UNIQUE " if index.unique else ""}INDEX IF NOT EXISTS "{index.name(table)}" '
                 f'ON "{table}" ({cols})')


def _v1_tables(conn: sqlite3.Connection) -> None:
    """The version-1 tables and indexes, made where missing: a database from before versioning has whichever of
    them the modules it met had made (often only some), with the same columns, and keeps them and their rows."""
    for name, table in _V1.items():
        _create_table(conn, name, table)
        for index in table.indexes:
            _create_index(conn, name, index)


def _v2_imported_by_session(conn: sqlite3.Connection) -> None:
    """Imported results are read and deleted per session (`store.imported`): an index instead of a scan."""
    _create_index(conn, IMPORTED, _IMPORTED_BY_SESSION)


Migration = Callable[[sqlite3.Connection], None]
MIGRATIONS: tuple[Migration, ...] = (_v1_tables, _v2_imported_by_session)


def version(conn: sqlite3.Connection) -> int:
    """How many migrations this database has had."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, path: Path, migrations: Sequence[Migration] = MIGRATIONS) -> None:
    """Run the migrations `conn`'s database has not had, each once and in its own write transaction (a failed one
    leaves the database as it was). An autocommit connection (`isolation_level=None`) is expected. Several
    processes may open a new store at once: the write lock decides which one migrates, the others then find
    nothing left to do. A database from a newer difflens is a `StoreError`."""
    while True:
        current = version(conn)
        if current > len(migrations):
            raise StoreError(f"the store's database {path} has schema version {current}, newer than this difflens "
                             f"knows ({len(migrations)})",
                             "upgrade difflens, or set DIFFLENS_HOME to another directory for this one")
        if current == len(migrations):
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            if version(conn) == current:  # nobody else migrated while this one waited for the lock
                migrations[current](conn)
                conn.execute(f"PRAGMA user_version = {current + 1}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
