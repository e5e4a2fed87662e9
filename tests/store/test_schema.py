"""The store's schema: one definition, versioned migrations from a database made before versions existed, a
database from a newer difflens refused, and every connection (also one in a fresh thread) with every table."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from store import answers, sessions
from store.db import connect
from store.errors import StoreError
from store.paths import db_path
from store.schema import MIGRATIONS, TABLES, migrate, version

# The store as the per-module "ensure my table" copies made it before versions (user_version 0), copied from
# sqlite_master of such a store: every table a module could make, and its indexes.
V0_TABLES = {
    "results": '''CREATE TABLE "results" ("key" TEXT PRIMARY KEY, "kind" TEXT, "status" TEXT, "file" TEXT,
        "sha256" TEXT, "bytes" INTEGER, "inputs" TEXT, "meta" TEXT, "created" REAL, "updated" REAL, "seconds" REAL)''',
    "imported_results": '''CREATE TABLE "imported_results" ("id" TEXT PRIMARY KEY, "session" TEXT, "key" TEXT,
        "kind" TEXT, "status" TEXT, "file" TEXT, "sha256" TEXT, "bytes" INTEGER, "inputs" TEXT, "meta" TEXT,
        "created" REAL, "updated" REAL, "seconds" REAL)''',
    "sessions": '''CREATE TABLE "sessions" ("id" TEXT PRIMARY KEY, "name" TEXT, "created" REAL, "updated" REAL,
        "base" TEXT, "ft" TEXT, "run" TEXT, "ui" TEXT, "origin" TEXT)''',
    "session_actions": '''CREATE TABLE "session_actions" ("id" TEXT PRIMARY KEY, "session" TEXT, "seq" INTEGER,
        "t" REAL, "method" TEXT, "kind" TEXT, "params" TEXT, "status" TEXT, "result" TEXT, "error" TEXT,
        "events" TEXT, "refs" TEXT, "seconds" REAL)''',
    "session_notes": '''CREATE TABLE "session_notes" ("id" TEXT PRIMARY KEY, "session" TEXT, "seq" INTEGER, "t" REAL,
        "text" TEXT, "cell" TEXT)''',
    "answers": '''CREATE TABLE "answers" ("key" TEXT PRIMARY KEY, "method" TEXT, "answer" TEXT, "deps" TEXT,
        "created" REAL)''',
    "boards": '''CREATE TABLE "boards" ("id" TEXT PRIMARY KEY, "name" TEXT, "source" TEXT, "pairs" TEXT,
        "settings" TEXT, "status" TEXT, "created" REAL, "updated" REAL)''',
    "board_pairs": '''CREATE TABLE "board_pairs" ("key" TEXT PRIMARY KEY, "name" TEXT, "base" TEXT, "ft" TEXT,
        "adapter" TEXT, "status" TEXT, "score" REAL, "trace" TEXT, "hypothesis" TEXT, "hypothesis_source" TEXT,
        "run" TEXT, "error" TEXT, "report" TEXT, "seconds" REAL, "updated" REAL)''',
}
V0_INDEXES = {
    "results": ['CREATE INDEX "idx_results_kind" ON "results" ("kind")'],
    "sessions": ['CREATE UNIQUE INDEX "idx_sessions_name" ON "sessions" ("name")'],
    "session_actions": ['CREATE UNIQUE INDEX "idx_session_actions_session_seq" '
                        'ON "session_actions" ("session", "seq")'],
    "session_notes": ['CREATE UNIQUE INDEX "idx_session_notes_session_seq" ON "session_notes" ("session", "seq")'],
}
V0_ROWS: dict[str, list[tuple[Any, ...]]] = {
    "results": [("k-run-00000001", "adl", "done", "k-run-00000001.safetensors", "ab" * 32, 96, '{"pair":"x"}',
                 '{"n_layers":2}', 1.0, 2.0, 1.5)],
    "imported_results": [("s-0123456789ab/k-imp-0000001", "s-0123456789ab", "k-imp-0000001", "lens", "done",
                          "cd.safetensors", "cd" * 32, 40, "{}", "{}", 1.0, 1.0, 0.0)],
    "sessions": [("s-0123456789ab", "cake study", 1.0, 3.0, "b", "f", "k-run-00000001", '{"heat":{"row":1}}', "")],
    "session_actions": [("s-0123456789ab/000001", "s-0123456789ab", 1, 2.0, "adl.summary", "call",
                         '{"run":"k-run-00000001"}', "done", '{"run":"k-run-00000001"}', "", "[]",
                         '["k-run-00000001"]', 0.1)],
    "session_notes": [("s-0123456789ab/n00001", "s-0123456789ab", 1, 2.5, "layer 1 says cake", "{}")],
    "answers": [("a-key-0001", "adl.summary", '{"run":"k-run-00000001"}', '["k-run-00000001"]', 4.0)],
    "boards": [("b-1", "board", "pairs.yaml", "[]", "{}", "done", 1.0, 2.0)],
    "board_pairs": [("p-1", "cake", "b", "f", None, "done", 0.7, "{}", "cakes", "agent", "k-run-00000001", None,
                     None, 12.0, 2.0)],
}


def make_v0(path: Path, tables: list[str]) -> None:
    """A store from before versions holding `tables` (with their indexes and one row each)."""
    with sqlite3.connect(path) as conn:
        for name in tables:
            conn.execute(V0_TABLES[name])
            for sql in V0_INDEXES.get(name, []):
                conn.execute(sql)
            for row in V0_ROWS[name]:
                conn.execute(f'INSERT INTO "{name}" VALUES ({",".join("?" * len(row))})', row)
    with sqlite3.connect(path) as conn:
        assert version(conn) == 0


def layout(conn: sqlite3.Connection) -> dict[str, Any]:
    """Every table's columns (name, declared type, primary key) and every index (columns, unique) of a database."""
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    out: dict[str, Any] = {}
    for table in tables:
        cols = [(r[1], r[2], bool(r[5])) for r in conn.execute(f'PRAGMA table_info("{table}")')]
        indexes = {r[1]: ([c[2] for c in conn.execute(f'PRAGMA index_info("{r[1]}")')], bool(r[2]))
                   for r in conn.execute(f'PRAGMA index_list("{table}")') if r[3] == "c"}
        out[table] = {"columns": cols, "indexes": indexes}
    return out


def declared() -> dict[str, Any]:
    """`TABLES` in the shape of `layout`."""
    types = {str: "TEXT", int: "INTEGER", float: "REAL"}
    return {name: {"columns": [(col, types[kind], col == table.pk) for col, kind in table.columns.items()],
                   "indexes": {index.name(name): (list(index.columns), index.unique) for index in table.indexes}}
            for name, table in TABLES.items()}


def rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    with sqlite3.connect(path) as conn:
        return {name: conn.execute(f'SELECT * FROM "{name}"').fetchall() for name in V0_ROWS}


def test_a_new_store_has_every_declared_table_and_index_and_the_latest_version() -> None:
    conn = connect().conn
    assert layout(conn) == declared()
    assert version(conn) == len(MIGRATIONS)


def test_a_store_from_before_versions_keeps_its_rows_and_gains_what_is_new() -> None:
    make_v0(db_path(), list(V0_TABLES))
    conn = connect().conn
    assert version(conn) == len(MIGRATIONS)
    assert layout(conn) == declared()  # the index on imported results by session is new
    assert "idx_imported_results_session" in layout(conn)["imported_results"]["indexes"]
    assert rows(db_path()) == V0_ROWS
    study = sessions.get("cake study")  # the store's code reads the old rows
    assert study.ui == {"heat": {"row": 1}} and [a["method"] for a in sessions.actions(study.id)] == ["adl.summary"]
    assert [n["text"] for n in sessions.notes(study.id)] == ["layer 1 says cake"]


def test_a_store_that_met_only_some_modules_gains_the_other_tables_and_keeps_its_own() -> None:
    """A store where no session was ever opened had no session tables (and someone's own table stays)."""
    path = db_path()
    make_v0(path, ["results", "answers", "boards", "board_pairs"])
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes_of_mine (id INTEGER PRIMARY KEY, text TEXT)")
        conn.execute("INSERT INTO notes_of_mine VALUES (1, 'keep me')")
    conn = connect().conn
    found = layout(conn)
    assert found.pop("notes_of_mine")["columns"] == [("id", "INTEGER", True), ("text", "TEXT", False)]
    assert found == declared()
    assert conn.execute("SELECT text FROM notes_of_mine").fetchall() == [("keep me",)]
    kept = rows(path)
    assert {name: kept[name] for name in ("results", "answers", "boards", "board_pairs")} == {
        name: V0_ROWS[name] for name in ("results", "answers", "boards", "board_pairs")}
    sessions.create("first session")
    with pytest.raises(sqlite3.IntegrityError):  # the unique name index is there
        conn.execute("INSERT INTO sessions (id, name) VALUES ('s-other', 'first session')")


def test_a_store_from_a_newer_difflens_is_refused_in_one_line_and_left_alone() -> None:
    path = db_path()
    make_v0(path, ["results"])
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(StoreError, match=r"schema version \d+, newer than this difflens knows") as caught:
        connect()
    assert "\n" not in str(caught.value) and "upgrade difflens" in str(caught.value)
    with sqlite3.connect(path) as conn:
        assert version(conn) == len(MIGRATIONS) + 1 and list(layout(conn)) == ["results"]
        assert conn.execute("SELECT * FROM results").fetchall() == V0_ROWS["results"]
    with pytest.raises(StoreError):  # still refused: nothing was cached
        answers.get("a-key-0001")


def test_each_migration_runs_once_in_order_and_a_failing_one_leaves_the_database_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "m.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    ran: list[str] = []

    def first(c: sqlite3.Connection) -> None:
        ran.append("first")
        c.execute("CREATE TABLE one (x TEXT)")

    def second(c: sqlite3.Connection) -> None:
        ran.append("second")
        c.execute("CREATE TABLE two (x TEXT)")
        raise sqlite3.OperationalError("disk I/O error")

    with pytest.raises(sqlite3.OperationalError):
        migrate(conn, path, [first, second])
    assert ran == ["first", "second"] and version(conn) == 1
    assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master")] == ["one"]

    def second_fixed(c: sqlite3.Connection) -> None:
        ran.append("second fixed")
        c.execute("CREATE TABLE two (x TEXT)")

    migrate(conn, path, [first, second_fixed])
    migrate(conn, path, [first, second_fixed])
    assert ran == ["first", "second", "second fixed"] and version(conn) == 2


def test_threads_opening_a_new_store_at_once_migrate_it_once() -> None:
    """Each thread has its own connection: the write lock lets one migrate, the others find it done."""
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def open_store() -> None:
        barrier.wait()
        try:
            sessions.list_sessions()
        except BaseException as exc:  # reported below: a thread cannot raise into the test
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert layout(connect().conn) == declared()


def test_a_store_opened_in_a_fresh_thread_after_another_thread_ended_has_its_unique_indexes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Connections live per thread; one freed with its thread may leave its id() to the next. Per-module caches
    keyed by id(database) then skipped the session indexes on a new store: here every store must have them."""
    for i in range(20):
        monkeypatch.setenv("DIFFLENS_HOME", str(tmp_path / f"home{i}"))
        worker = threading.Thread(target=sessions.create, args=("study",))
        worker.start()
        worker.join()
        with sqlite3.connect(db_path()) as conn:
            names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert "idx_sessions_name" in names, f"store {i} lacks the unique session-name index"
