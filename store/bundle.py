"""Session files: one zip holding a session's rows and every result it references, verified on the way in.

Layout: `manifest.json` (format, version, sha256 and size of every other member), `session.json` (the session,
action, note and result rows exactly as the store holds them) and `results/<key>.safetensors` (the stored
bytes). Reading checks member names (nothing may escape the store), sizes, hashes and the row schema before
anything is written; import stages the files, inserts every row in one transaction and only then renames the
files into place, so a bad or truncated file leaves the store exactly as it was. Nothing is ever unpickled.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors.numpy import load as load_safetensors

from store import sessions
from store.atomic import atomic_path
from store.bundle_schema import (
    FORMAT,
    MANIFEST,
    MAX_MEMBER_BYTES,
    MAX_TOTAL_BYTES,
    SESSION_JSON,
    VERSION,
    bad,
    check_manifest,
    check_member_name,
    check_rows,
    result_member,
)
from store.errors import StoreError
from store.hashing import file_sha256
from store.paths import tensors_dir

EXTENSION = ".difflens"
_EPOCH = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class Bundle:
    """A verified session file in memory: rows as stored, and the result files' bytes by key."""

    manifest: dict[str, Any]
    session: dict[str, Any]
    actions: list[dict[str, Any]]
    notes: list[dict[str, Any]]
    results: list[dict[str, Any]]
    files: dict[str, bytes]


def _results_columns() -> dict[str, type]:
    return dict(sessions.db()["results"].columns_dict)


def _member(name: str, data: bytes) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name, date_time=_EPOCH)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    return info, data


def export_session(ref: str, target: Path) -> Path:
    """Write session `ref` and its referenced results to `target` (a file, or a directory to put it in)."""
    session = sessions.get(ref)
    database = sessions.db()
    if target.is_dir() or not target.suffix:
        target = target / f"{_file_stem(session.name)}{EXTENSION}"
    actions = [dict(r) for r in database[sessions.ACTIONS].rows_where("session = ?", [session.id], order_by="seq")]
    notes = [dict(r) for r in database[sessions.NOTES].rows_where("session = ?", [session.id], order_by="seq")]
    keys = sorted({k for a in actions if a["status"] == sessions.DONE for k in json.loads(a["refs"] or "[]")}
                  | ({session.run} if session.run else set()))
    members: list[tuple[zipfile.ZipInfo, bytes]] = []
    result_rows, missing = [], []
    for key in keys:
        rows = list(database["results"].rows_where("key = ?", [key], limit=1))
        if not rows or rows[0]["status"] != "done":
            missing.append(key)
            continue
        row = dict(rows[0])
        path = tensors_dir() / row["file"]
        data = path.read_bytes() if path.is_file() else b""
        if hashlib.sha256(data).hexdigest() != row["sha256"]:
            raise StoreError(f"result {key} is damaged in the store ({path})",
                             "recompute it (open its run again) and export again")
        result_rows.append(row)
        members.append(_member(result_member(key), data))
    body = {"session": dict(database[sessions.SESSIONS].get(session.id)), "actions": actions, "notes": notes,
            "results": result_rows}
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


def _file_stem(name: str) -> str:
    stem = "".join(c if c.isalnum() or c in "-_." else "-" for c in name).strip("-.")
    return stem or "session"


def read_bundle(path: Path) -> Bundle:
    """Open and verify a session file without touching the store (replay reads it straight from here)."""
    shown = str(path)
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            names = [i.filename for i in infos]
            for name in names:
                check_member_name(shown, name)
            if len(set(names)) != len(names):
                raise bad(shown, "a member appears twice")
            if sum(i.file_size for i in infos) > MAX_TOTAL_BYTES or any(i.file_size > MAX_MEMBER_BYTES for i in infos):
                raise bad(shown, "members are larger than any session file difflens writes")
            raw = {i.filename: zf.read(i) for i in infos}
    except FileNotFoundError:
        raise StoreError(f"no session file at {shown}", "check the path") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, NotImplementedError) as exc:
        raise bad(shown, f"truncated or damaged ({exc})") from None
    if MANIFEST not in raw:
        raise bad(shown, "it has no manifest.json")
    manifest = _json(shown, MANIFEST, raw.pop(MANIFEST))
    files = check_manifest(shown, manifest)
    if set(files) != set(raw):
        extra, absent = sorted(set(raw) - set(files)), sorted(set(files) - set(raw))
        raise bad(shown, f"members and manifest disagree (unlisted {extra}, missing {absent})")
    for name, data in raw.items():
        if len(data) != files[name]["bytes"] or hashlib.sha256(data).hexdigest() != files[name]["sha256"]:
            raise bad(shown, f"{name} does not match its sha256 in the manifest (edited or damaged)")
    return _parse(shown, manifest, _json(shown, SESSION_JSON, raw[SESSION_JSON]), raw)


def _json(shown: str, name: str, data: bytes) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad(shown, f"{name} is not JSON ({exc})") from None


def _parse(shown: str, manifest: dict[str, Any], body: Any, raw: dict[str, bytes]) -> Bundle:
    if not isinstance(body, dict) or set(body) != {"session", "actions", "notes", "results"}:
        raise bad(shown, "session.json must hold session, actions, notes and results")
    [session] = check_rows(shown, sessions.SESSIONS, [body["session"]], sessions.SESSION_COLUMNS)
    actions = check_rows(shown, sessions.ACTIONS, body["actions"], sessions.ACTION_COLUMNS)
    notes = check_rows(shown, sessions.NOTES, body["notes"], sessions.NOTE_COLUMNS)
    results = check_rows(shown, "results", body["results"], _results_columns())
    sessions.check_name(str(session["name"]))
    for row in (*actions, *notes):
        if row["session"] != session["id"] or not str(row["id"]).startswith(f"{session['id']}/"):
            raise bad(shown, f"row {row['id']!r} does not belong to session {session['id']!r}")
        for column in ("params", "result", "events", "refs", "cell"):
            if row.get(column):
                _json(shown, f"{row['id']}.{column}", str(row[column]).encode("utf-8"))
    files: dict[str, bytes] = {}
    for row in results:
        member = result_member(row["key"])
        data = raw.get(member)
        if data is None or row["file"] != f"{row['key']}.safetensors" or row["sha256"] != hashlib.sha256(
                data).hexdigest() or row["bytes"] != len(data):
            raise bad(shown, f"result row {row['key']!r} does not match its file")
        try:
            load_safetensors(data)
        except Exception as exc:  # any header or size inconsistency: the file is not a usable result
            raise bad(shown, f"{member} is not a readable safetensors file ({exc})") from None
        files[row["key"]] = data
    if len(files) != len(raw) - 1:
        raise bad(shown, "it holds result files that no result row describes")
    return Bundle(manifest=manifest, session=session, actions=actions, notes=notes, results=results, files=files)


def import_bundle(path: Path, name: str | None = None) -> sessions.Session:
    """Verify `path`, then add its session and results to the store in one step (all or nothing)."""
    bundle = read_bundle(path)
    session = dict(bundle.session)
    if name:
        session["name"] = sessions.check_name(name)
    existing = sessions.find(session["id"])
    if existing is not None and existing.id == session["id"]:
        raise StoreError(f"session {session['id']} is already in the store as {existing.name!r}",
                         "delete it first (`difflens sessions delete`) to import it again")
    if sessions.find(session["name"]) is not None:
        raise StoreError(f"a session named {session['name']!r} already exists", "import with --name NEW")
    database = sessions.db()
    new_results = [r for r in bundle.results if _needs(r)]
    staged: dict[Path, Path] = {}
    placed: list[Path] = []  # files this import created; a failure removes exactly these
    try:
        for row in new_results:
            fd, tmp = tempfile.mkstemp(prefix=f".{row['key']}.", suffix=".import", dir=tensors_dir())
            with os.fdopen(fd, "wb") as fh:
                fh.write(bundle.files[row["key"]])
                fh.flush()
                os.fsync(fh.fileno())
            staged[Path(tmp)] = tensors_dir() / row["file"]
        fresh = {final for final in staged.values() if not final.exists()}
        conn = database.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            _insert(conn, sessions.SESSIONS, session)
            for row in bundle.actions:
                _insert(conn, sessions.ACTIONS, row)
            for row in bundle.notes:
                _insert(conn, sessions.NOTES, row)
            for row in new_results:
                conn.execute("DELETE FROM results WHERE key = ?", [row["key"]])
                _insert(conn, "results", row)
            for tmp, final in staged.items():
                os.replace(tmp, final)
                if final in fresh:
                    placed.append(final)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    except BaseException:
        for final in placed:
            final.unlink(missing_ok=True)
        raise
    finally:
        for tmp in staged:
            tmp.unlink(missing_ok=True)
    return sessions.get(session["id"])


def _needs(row: dict[str, Any]) -> bool:
    """A result to add: absent, or present but unusable (a damaged file). A good local copy is kept."""
    rows = list(sessions.db()["results"].rows_where("key = ?", [row["key"]], limit=1))
    if not rows:
        return True
    local = tensors_dir() / rows[0]["file"]
    with contextlib.suppress(OSError):
        if rows[0]["status"] == "done" and file_sha256(local) == rows[0]["sha256"]:
            return False
    return True


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
