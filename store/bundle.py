"""Session files: one zip holding a session's rows and every result it references, verified on the way in.

Layout: `manifest.json` (format, version, sha256 and size of every other member), `session.json` (the session,
action, note and result rows exactly as the store holds them) and `results/<key>.safetensors` (the stored
bytes). Reading (`store.bundle_read`) checks member names, sizes, hashes and every row and nested JSON value
within a byte budget before anything is written; import stages the files, inserts every row in one transaction
and only then renames the files into place, so a bad or truncated file leaves the store exactly as it was.
Imported results go to `store.imported`, apart from the results this machine computed: they serve the session
that carried them, never a new computation. A session exports only what it produced or imported: an imported
session's references are cut to the results its file carried. Nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
import zipfile
from pathlib import Path
from typing import Any

from store import imported, sessions
from store.atomic import atomic_path
from store.bundle_read import Bundle, read_bundle
from store.bundle_schema import FORMAT, MANIFEST, SESSION_JSON, VERSION, bad, decode_json_columns, result_member
from store.db import connect
from store.errors import StoreError, warn_skipped
from store.hashing import canonical_json
from store.paths import home, tensors_dir
from store.schema import ACTIONS, IMPORTED, NOTES, RESULTS, SESSIONS

__all__ = ["EXTENSION", "Bundle", "describe", "export_session", "import_bundle", "read_bundle"]

EXTENSION = ".difflens"
_EPOCH = (1980, 1, 1, 0, 0, 0)


def _member(name: str, data: bytes) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name, date_time=_EPOCH)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    return info, data


def _result_source(session_id: str, key: str) -> tuple[dict[str, Any], Path] | None:
    """A finished result row (results table shape) and its file: the one the session was imported with, else the
    one computed here (None, with a warning, for a row that does not decode)."""
    found = imported.row(key, session_id)
    rows = [] if found else list(connect()[RESULTS].rows_where("key = ? AND status = 'done'", [key], limit=1))
    source = (imported.as_result_row(found), imported.file_for(found["sha256"])) if found else (
        (dict(rows[0]), tensors_dir() / rows[0]["file"]) if rows else None)
    if source is not None:
        try:
            decode_json_columns(RESULTS, source[0])
        except StoreError as exc:
            warn_skipped(f"result {key}", exc)
            return None
    return source


def export_session(ref: str, target: Path) -> Path:
    """Write session `ref` and its referenced results to `target` (a file, or a directory to put it in)."""
    session = sessions.get(ref)
    database = connect()
    if target.is_dir() or not target.suffix:
        target = target / f"{_file_stem(session.name)}{EXTENSION}"
    actions = sessions.readable(ACTIONS, database[ACTIONS].rows_where(
        "session = ?", [session.id], order_by="seq"), _checked_action)
    notes = sessions.readable(NOTES, database[NOTES].rows_where(
        "session = ?", [session.id], order_by="seq"), _checked_note)
    referenced = {k for a in actions if a["status"] == sessions.DONE for k in json.loads(a["refs"] or "[]")}
    keys = sorted(referenced | ({session.run} if session.run and imported.row(session.run, session.id) else set()))
    members: list[tuple[zipfile.ZipInfo, bytes]] = []
    result_rows, missing = [], []
    for key in keys:
        source = _result_source(session.id, key)
        if source is None:
            missing.append(key)
            continue
        row, path = source
        data = path.read_bytes() if path.is_file() else b""
        if hashlib.sha256(data).hexdigest() != row["sha256"]:
            raise StoreError(f"result {key} is damaged in the store ({path})",
                             "recompute it (open its run again) and export again")
        result_rows.append(row)
        members.append(_member(result_member(key), data))
    body = {"session": {**dict(database.table(SESSIONS).get(session.id)), "ui": canonical_json(session.ui)},
            "actions": actions, "notes": notes, "results": result_rows}
    members.insert(0, _member(SESSION_JSON, json.dumps(body, indent=1, ensure_ascii=False,
                                                       sort_keys=True).encode("utf-8")))
    files = {info.filename: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)} for info, data in members}
    manifest = {"format": FORMAT, "version": VERSION, "session": {"id": session.id, "name": session.name},
                "exported": time.time(), "files": files, "missing_results": missing}
    members.insert(0, _member(MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode("utf-8")))
    with atomic_path(target) as tmp, zipfile.ZipFile(tmp, "w") as zf:
        for info, data in members:
            zf.writestr(info, data)
    return target


def _checked_action(row: dict[str, Any]) -> dict[str, Any]:
    """An action as exported: decodable, and with this machine's paths in its answers made relative."""
    decoded = sessions.decode_action(row)
    out = dict(row)
    for column in ("result", "events"):
        if row[column]:
            out[column] = canonical_json(_local_paths(decoded[column]))
    return out


def _local_paths(value: Any) -> Any:
    """Answers name files in the store or the user's home; a shared file says `$DIFFLENS_HOME/...` and `~/...`
    instead (the exporter's directories are nobody else's business and mean nothing on another machine)."""
    if isinstance(value, str):
        for root, shown in ((str(home()), "$DIFFLENS_HOME"), (str(Path.home()), "~")):
            if value == root or value.startswith(root + os.sep):
                return shown + value[len(root):]
        return value
    if isinstance(value, dict):
        return {k: _local_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_local_paths(v) for v in value]
    return value


def _checked_note(row: dict[str, Any]) -> dict[str, Any]:
    sessions.decode_note(row)
    return dict(row)


def _file_stem(name: str) -> str:
    stem = "".join(c if c.isalnum() or c in "-_." else "-" for c in name).strip("-.")
    return stem or "session"


def import_bundle(path: Path, name: str | None = None) -> sessions.Session:
    """Verify `path`, then add its session and (apart from local results) its results in one step."""
    conn = connect().conn  # a store that cannot take the import is said before the file is read
    bundle = read_bundle(path, stage_in=imported.directory())
    placed: list[Path] = []  # files this import created; a failure removes exactly these
    try:
        session = dict(bundle.session)
        if name:
            session["name"] = sessions.check_name(name)
        existing = sessions.find(session["id"])
        if existing is not None and existing.id == session["id"]:
            raise StoreError(f"session {session['id']} is already in the store as {existing.name!r}",
                             "delete it first (`difflens sessions delete`) to import it again")
        if sessions.find(session["name"]) is not None:
            raise StoreError(f"a session named {session['name']!r} already exists", "import with --name NEW")
        rows = [imported.row_for(session["id"], r) for r in bundle.results]
        actions = _own_refs(bundle.actions, {r["key"] for r in bundle.results})
        conn.execute("BEGIN IMMEDIATE")
        try:
            _insert(conn, SESSIONS, session)
            for row in actions:
                _insert(conn, ACTIONS, row)
            for row in bundle.notes:
                _insert(conn, NOTES, row)
            for row in rows:
                _insert(conn, IMPORTED, row)
                final = imported.file_for(row["sha256"])
                if not final.exists():
                    os.replace(bundle.staged[row["key"]], final)
                    placed.append(final)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    except BaseException as exc:
        for final in placed:
            final.unlink(missing_ok=True)
        if isinstance(exc, sqlite3.IntegrityError):
            raise bad(str(path), f"its rows clash with each other or the store ({exc})") from None
        raise
    finally:
        bundle.discard()
    return sessions.get(session["id"])


def _own_refs(actions: list[dict[str, Any]], carried: set[str]) -> list[dict[str, Any]]:
    """The file's actions with their result references cut to the results the file carries: a reference to any
    other key (one of the importer's own runs, say) would pull that result into the importer's next export."""
    return [{**row, "refs": canonical_json([k for k in json.loads(row["refs"] or "[]") if k in carried])}
            for row in actions]


def _insert(conn: Any, table: str, row: dict[str, Any]) -> None:
    """Plain INSERT inside the caller's transaction (sqlite-utils would commit it midway)."""
    cols = sorted(row)
    conn.execute(f"INSERT INTO [{table}] ({', '.join(f'[{c}]' for c in cols)}) VALUES ({', '.join('?' * len(cols))})",
                 [row[c] for c in cols])


def describe(bundle: Bundle) -> dict[str, Any]:
    """What a session file holds, for `sessions show FILE` and the start screen."""
    s = bundle.session
    return {"id": s["id"], "name": s["name"], "base": s["base"], "ft": s["ft"], "run": s["run"],
            "updated": s["updated"], "actions": sum(a["status"] == sessions.DONE for a in bundle.actions),
            "notes": len(bundle.notes), "results": len(bundle.results),
            "missing_results": bundle.manifest.get("missing_results", [])}
