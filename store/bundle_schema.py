"""What a session file may contain: names, manifest and rows are checked before anything touches the store.

A session file comes from someone else's machine, so every field is validated against the columns the store
declares; anything unexpected (an extra member, a path outside `results/`, a wrong type) rejects the file.
"""

from __future__ import annotations

import math
import re
from typing import Any

from store import jsonvalue
from store.errors import StoreError

FORMAT = "difflens-session"
VERSION = 1
MANIFEST, SESSION_JSON = "manifest.json", "session.json"
RESULT_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
MAX_MANIFEST_BYTES = 1 << 20
MAX_SESSION_BYTES = 64 << 20
MAX_MEMBER_BYTES = 1 << 30
MAX_TOTAL_BYTES = 4 << 30
MAX_MEMBERS = 20_000  # results of one session, far past any real one; the zip's own count is read first
STATUSES = {"session_actions": ("done", "running", "failed"), "results": ("done",)}

# The JSON kept inside string columns: which Python type each must decode to, and whether "" is allowed.
JSON_COLUMNS: dict[str, dict[str, tuple[type, bool]]] = {
    "sessions": {"ui": (dict, True)},
    "session_actions": {"params": (dict, True), "result": (dict, True), "events": (list, True),
                        "refs": (list, True)},
    "session_notes": {"cell": (dict, True)},
    "results": {"inputs": (dict, False), "meta": (dict, False)},
}


def bad(path: str, what: str) -> StoreError:
    return StoreError(f"{path} is not a valid difflens session file: {what}",
                      "ask for a fresh export; nothing was imported")


def result_member(key: str) -> str:
    return f"results/{key}.safetensors"


def check_member_name(path: str, name: str) -> None:
    """Only `manifest.json`, `session.json` and `results/<key>.safetensors`: nothing can land outside the store."""
    if name.startswith(("/", "\\")) or ".." in name.split("/") or "\\" in name or ":" in name.split("/")[0]:
        raise bad(path, f"member {name!r} would escape the store (absolute path or '..')")
    if name in (MANIFEST, SESSION_JSON):
        return
    head, _, tail = name.partition("/")
    if head != "results" or not tail.endswith(".safetensors") or not RESULT_KEY.match(tail[: -len(".safetensors")]):
        raise bad(path, f"unexpected member {name!r}")


def check_manifest(path: str, manifest: Any) -> dict[str, dict[str, Any]]:
    """The manifest's file table (`name -> {sha256, bytes}`) after checking format, version and types."""
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise bad(path, "the manifest does not say format 'difflens-session'")
    if manifest.get("version") != VERSION:
        raise StoreError(f"{path} is session format version {manifest.get('version')!r}; this difflens reads {VERSION}",
                         "upgrade difflens or export the session again")
    files = manifest.get("files")
    if not isinstance(files, dict) or SESSION_JSON not in files:
        raise bad(path, "the manifest lists no session.json")
    for name, entry in files.items():
        check_member_name(path, name)
        if name == MANIFEST or not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str) \
                or not SHA256.match(entry["sha256"]) or not isinstance(entry.get("bytes"), int):
            raise bad(path, f"manifest entry for {name!r} is malformed")
    return files


def check_row(path: str, table: str, row: Any, columns: dict[str, type]) -> dict[str, Any]:
    """A row with exactly the table's columns, each of the declared type (ints accepted for floats)."""
    if not isinstance(row, dict):
        raise bad(path, f"a {table} row is {type(row).__name__}, not an object")
    if set(row) != set(columns):
        extra, absent = sorted(set(row) - set(columns)), sorted(set(columns) - set(row))
        raise bad(path, f"a {table} row has unexpected columns {extra} and lacks {absent}")
    for name, kind in columns.items():
        value = row[name]
        ok = value is None or isinstance(value, kind) or (kind is float and isinstance(value, int))
        if not ok or isinstance(value, bool):
            raise bad(path, f"{table}.{name} is {type(value).__name__}, expected {kind.__name__}")
        if isinstance(value, float) and not math.isfinite(value):
            raise bad(path, f"{table}.{name} is not a finite number")
    if table in STATUSES and row.get("status") not in STATUSES[table]:
        raise bad(path, f"{table}.status is {row.get('status')!r}, expected one of {list(STATUSES[table])}")
    try:
        decoded = decode_json_columns(table, row)
    except StoreError as exc:
        raise bad(path, exc.problem) from None
    for name, value in decoded.items():
        if name == "refs" and not all(isinstance(k, str) and RESULT_KEY.match(k) for k in value):
            raise bad(path, f"{table}.refs holds something that is not a result key")
    return row


def decode_json_columns(table: str, row: dict[str, Any]) -> dict[str, Any]:
    """The decoded JSON columns of `row`; a value that is not JSON of the declared shape raises `StoreError`.

    Used by the importer before anything is written and by every store reader, so a row that got in some
    other way (an older difflens, a hand-edited database) is caught the same way."""
    out: dict[str, Any] = {}
    for name, (kind, may_be_empty) in JSON_COLUMNS.get(table, {}).items():
        text = row.get(name)
        if text in (None, "") and may_be_empty:
            out[name] = kind()
            continue
        what = f"{table}.{name} of {row.get('id') or row.get('key')!r}"
        try:
            value = jsonvalue.loads(str(text))
        except jsonvalue.JsonValueError as exc:
            raise StoreError(f"{what} is not JSON ({exc})", _ROW_FIX) from None
        if not isinstance(value, kind):
            raise StoreError(f"{what} is {type(value).__name__}, expected {'an object' if kind is dict else 'a list'}",
                             _ROW_FIX)
        out[name] = value
    return out


_ROW_FIX = "the row was skipped; delete its session or recompute the result to replace it"


def check_rows(path: str, table: str, rows: Any, columns: dict[str, type]) -> list[dict[str, Any]]:
    if not isinstance(rows, list):
        raise bad(path, f"{table} is not a list")
    checked = [check_row(path, table, r, columns) for r in rows]
    pk = "key" if table == "results" else "id"
    if len({r[pk] for r in checked}) != len(checked) or ("seq" in columns and len({r["seq"] for r in checked})
                                                          != len(checked)):
        raise bad(path, f"two {table} rows share an id or a sequence number")
    return checked
