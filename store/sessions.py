"""Sessions: named analyses saved as they happen (one SQLite row per action, committed when it is made).

A session is its `sessions` row (name, pair, run, latest UI state), its `session_actions` (every engine call:
method, params, result JSON, streamed partial events, referenced result keys) and its `session_notes`. Rows are
written one at a time in autocommit mode, so a terminal that dies loses at most the action still in flight.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from store import imported
from store.bundle_schema import decode_json_columns
from store.db import connect
from store.errors import StoreError, warn_skipped
from store.hashing import canonical_json
from store.printable import UNSAFE_CHARS
from store.schema import ACTIONS, NOTES, RESULTS, SESSIONS

DONE, RUNNING, FAILED = "done", "running", "failed"
_NAME_OK = re.compile(f"^[^{UNSAFE_CHARS}\t\n/\\\\]{{1,80}}$")
_KEY_LIKE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{7,100}$")


@dataclass(frozen=True)
class Session:
    """One session row, decoded."""

    id: str
    name: str
    created: float
    updated: float
    base: str
    ft: str
    run: str
    ui: dict[str, Any]
    origin: str

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Session:
        """The decoded row; an unreadable saved view is dropped with a warning so the session stays usable."""
        try:
            ui = decode_json_columns(SESSIONS, row)["ui"]
        except StoreError as exc:
            warn_skipped(f"the saved view of session {row['id']}", exc)
            ui = {}
        return cls(id=str(row["id"]), name=str(row["name"]), created=row["created"] or 0.0,
                   updated=row["updated"] or 0.0, base=str(row["base"] or ""), ft=str(row["ft"] or ""),
                   run=str(row["run"] or ""), ui=ui, origin=str(row["origin"] or ""))


def check_name(name: str) -> str:
    """A name users can type back: 1–80 printable characters (no controls, NEL or bidi overrides), no slashes."""
    name = name.strip()
    if not _NAME_OK.match(name):
        raise StoreError(f"bad session name {name!r}", "use 1–80 printable characters without / or \\")
    return name


def create(name: str, origin: str = "") -> Session:
    """A new empty session; names are unique."""
    name = check_name(name)
    if find(name) is not None:
        raise StoreError(f"a session named {name!r} already exists", "pick another name or delete that session")
    now = time.time()
    row = {"id": f"s-{uuid.uuid4().hex[:12]}", "name": name, "created": now, "updated": now, "base": "", "ft": "",
           "run": "", "ui": "{}", "origin": origin}
    connect().table(SESSIONS).insert(row)
    return Session.from_row(row)


def find(ref: str) -> Session | None:
    """The session named `ref`, else the one whose id is (or starts with) `ref`."""
    table = connect()[SESSIONS]
    rows = list(table.rows_where("name = ?", [ref.strip()], limit=1)) or list(
        table.rows_where("id = ? OR id LIKE ?", [ref, f"{ref}%"], limit=2))
    return Session.from_row(rows[0]) if len(rows) == 1 else None


def get(ref: str) -> Session:
    """Like `find`, but a missing session is an error the user can act on."""
    found = find(ref)
    if found is None:
        raise StoreError(f"no session {ref!r} in the store", "list them with `difflens sessions list`")
    return found


def list_sessions() -> list[dict[str, Any]]:
    """Every session, newest first, with its action and note counts."""
    database = connect()
    sql = (f"SELECT s.*, (SELECT COUNT(*) FROM {ACTIONS} a WHERE a.session = s.id AND a.status = 'done') AS actions, "
           f"(SELECT COUNT(*) FROM {NOTES} n WHERE n.session = s.id) AS notes FROM {SESSIONS} s "
           "ORDER BY s.updated DESC")
    return [dict(r) for r in database.query(sql)]


def rename(ref: str, new_name: str) -> Session:
    session = get(ref)
    new_name = check_name(new_name)
    if find(new_name) is not None:
        raise StoreError(f"a session named {new_name!r} already exists", "pick another name")
    connect().table(SESSIONS).update(session.id, {"name": new_name, "updated": time.time()})
    return get(session.id)


def delete(ref: str) -> Session:
    """Remove a session's rows and the results imported with it (computed results stay: a shared cache)."""
    session = get(ref)
    conn = connect().conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        for table, column in ((ACTIONS, "session"), (NOTES, "session"), (SESSIONS, "id")):
            conn.execute(f"DELETE FROM {table} WHERE {column} = ?", [session.id])
        unused = imported.forget(conn, session.id)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    for path in unused:
        path.unlink(missing_ok=True)
    return session


def _next_seq(table: str, session_id: str) -> int:
    row = connect().execute(f"SELECT COALESCE(MAX(seq), 0) FROM {table} WHERE session = ?", [session_id]).fetchone()
    return int(row[0]) + 1


def begin_action(session_id: str, method: str, params: dict[str, Any], kind: str) -> str:
    """Commit a `running` row before the engine is asked: a crash leaves it marked as the one in flight."""
    seq = _next_seq(ACTIONS, session_id)
    action_id = f"{session_id}/{seq:06d}"
    connect().table(ACTIONS).insert({"id": action_id, "session": session_id, "seq": seq, "t": time.time(),
                                     "method": method, "kind": kind, "params": canonical_json(params),
                                     "status": RUNNING, "result": "", "error": "", "events": "[]", "refs": "[]",
                                     "seconds": 0.0})
    return action_id


def finish_action(action_id: str, *, result: dict[str, Any] | None = None, error: str = "",
                  events: list[dict[str, Any]] | None = None, seconds: float = 0.0) -> None:
    """Commit the outcome of an action: its result JSON (so replay needs no engine) and its result keys."""
    database = connect()
    refs = referenced_keys([result, json.loads(database.table(ACTIONS).get(action_id)["params"])]) if result else []
    database.table(ACTIONS).update(action_id, {
        "status": DONE if result is not None else FAILED, "result": canonical_json(result) if result else "",
        "error": error, "events": canonical_json(events or []), "refs": canonical_json(refs), "seconds": seconds})
    session_id = action_id.split("/", 1)[0]
    changes: dict[str, Any] = {"updated": time.time()}
    if result is not None and result.get("run") and result.get("base"):
        changes.update(run=str(result["run"]), base=str(result["base"]), ft=str(result.get("ft", "")))
    database.table(SESSIONS).update(session_id, changes)


def actions(session_id: str, *, done_only: bool = True) -> list[dict[str, Any]]:
    """The session's actions in order, JSON columns decoded."""
    where = "session = ?" + (" AND status = 'done'" if done_only else "")
    return readable(ACTIONS, connect()[ACTIONS].rows_where(where, [session_id], order_by="seq"), decode_action)


def decode_action(row: dict[str, Any]) -> dict[str, Any]:
    decoded = decode_json_columns(ACTIONS, row)
    return {**row, **decoded, "result": decoded["result"] if row["result"] else None}


def readable(table: str, rows: Iterable[dict[str, Any]], decode: Any) -> list[dict[str, Any]]:
    """`decode(row)` for each row; a row that does not decode is skipped with a one-line warning."""
    out = []
    for row in rows:
        try:
            out.append(decode(row))
        except StoreError as exc:
            warn_skipped(f"a {table} row", exc)
    return out


def add_note(session_id: str, text: str, cell: dict[str, Any] | None = None) -> None:
    seq = _next_seq(NOTES, session_id)
    connect().table(NOTES).insert({"id": f"{session_id}/n{seq:05d}", "session": session_id, "seq": seq,
                                   "t": time.time(), "text": text, "cell": canonical_json(cell or {})})
    connect().table(SESSIONS).update(session_id, {"updated": time.time()})


def notes(session_id: str) -> list[dict[str, Any]]:
    return readable(NOTES, connect()[NOTES].rows_where("session = ?", [session_id], order_by="seq"), decode_note)


def decode_note(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, **decode_json_columns(NOTES, row)}


def save_ui(session_id: str, ui: dict[str, Any]) -> None:
    """The latest UI state (selected cell, pane settings): one row update, committed at once."""
    connect().table(SESSIONS).update(session_id, {"ui": canonical_json(ui), "updated": time.time()})


def referenced_keys(values: Iterable[Any]) -> list[str]:
    """Keys of stored results named anywhere in these JSON values (run ids, readout keys, ...)."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, str):
            if _KEY_LIKE.match(value) and len(found) < 5000:
                found.add(value)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)

    for v in values:
        walk(v)
    if not found:
        return []
    candidates = sorted(found)
    keys: list[str] = []
    for i in range(0, len(candidates), 500):
        chunk = candidates[i:i + 500]
        marks = ",".join("?" * len(chunk))
        keys += [r[0] for r in connect().execute(f"SELECT key FROM {RESULTS} WHERE key IN ({marks})", chunk).fetchall()]
    return sorted(keys)
