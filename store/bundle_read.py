"""Reading a session file within a byte budget: every member is streamed, counted and hashed, never held whole.

A zip's headers are claims. Sizes are checked against the manifest and the budgets in `bundle_schema` before a
byte is decompressed; members are then read in 1 MiB chunks that stop at the claimed size, so a small file that
expands to gigabytes costs one chunk of memory and is refused. Result files are streamed into staging files
(import) or only hashed (replay, `sessions show`); `sessions list` reads the manifest and session.json alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import struct
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from store import jsonvalue, sessions
from store.bundle_schema import (
    MANIFEST,
    MAX_MANIFEST_BYTES,
    MAX_MEMBER_BYTES,
    MAX_MEMBERS,
    MAX_SESSION_BYTES,
    MAX_TOTAL_BYTES,
    SESSION_JSON,
    bad,
    check_manifest,
    check_member_name,
    check_rows,
    result_member,
)
from store.errors import StoreError
from store.schema import ACTIONS, NOTES, RESULTS, SESSIONS, columns

CHUNK = 1 << 20
MAX_HEADER_BYTES = 1 << 20
_DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "I16": 2, "F16": 2, "BF16": 2,
                "U32": 4, "I32": 4, "F32": 4, "U64": 8, "I64": 8, "F64": 8}


@dataclass(frozen=True)
class Bundle:
    """A verified session file: rows as stored, and (when staged) each result's verified temp file by key."""

    manifest: dict[str, Any]
    session: dict[str, Any]
    actions: list[dict[str, Any]]
    notes: list[dict[str, Any]]
    results: list[dict[str, Any]]
    staged: dict[str, Path] = field(default_factory=dict)

    def discard(self) -> None:
        for tmp in self.staged.values():
            tmp.unlink(missing_ok=True)


def read_bundle(path: Path, *, results: bool = True, stage_in: Path | None = None) -> Bundle:
    """Open and verify a session file without touching the store.

    `results=False` skips the result members (listing);
    `stage_in` streams each verified result into a temp file there (import). On any failure nothing staged
    remains."""
    shown = str(path)
    staged: dict[str, Path] = {}
    try:
        _check_entry_count(shown, path)
        with zipfile.ZipFile(path) as zf:
            infos = _infos(shown, zf)
            manifest = _json(shown, MANIFEST, _read_all(shown, zf, infos[MANIFEST], MAX_MANIFEST_BYTES))
            files = check_manifest(shown, manifest)
            _match(shown, files, infos)
            body = _json(shown, SESSION_JSON, _read_all(shown, zf, infos[SESSION_JSON], MAX_SESSION_BYTES,
                                                        files[SESSION_JSON]))
            parsed = _parse(shown, manifest, body, files)
            if results:
                for row in parsed.results:
                    member = result_member(row["key"])
                    if stage_in is None:
                        _stream(shown, zf, infos[member], files[member], None)
                        continue
                    try:
                        fd, tmp = tempfile.mkstemp(prefix=f".{row['key']}.", suffix=".import", dir=stage_in)
                    except OSError as exc:
                        raise _unwritable(stage_in, exc) from None
                    staged[row["key"]] = Path(tmp)
                    with os.fdopen(fd, "wb") as sink:
                        _stream(shown, zf, infos[member], files[member], sink)
                        sink.flush()
                        os.fsync(sink.fileno())
    except BaseException as exc:
        for staged_file in staged.values():
            staged_file.unlink(missing_ok=True)
        if isinstance(exc, FileNotFoundError) and exc.filename == str(path):
            raise StoreError(f"no session file at {shown}", "check the path") from None
        if isinstance(exc, zipfile.BadZipFile | zipfile.LargeZipFile | EOFError | NotImplementedError
                      | RuntimeError | OSError):
            raise bad(shown, f"truncated or damaged ({exc})") from None
        raise
    return replace(parsed, staged=staged)


def _unwritable(directory: Path | None, exc: OSError) -> StoreError:
    """A staging write failed: the store's problem (read-only, full), never the file's."""
    where = f" at {directory}" if directory else ""
    return StoreError(f"cannot write into the store{where} ({exc.strerror or exc})",
                      "make the store writable or free space there (or set DIFFLENS_HOME to another store), "
                      "then import again; the session file was not the problem")


def _check_entry_count(shown: str, path: Path) -> None:
    """Refuse a zip whose end record claims more than `MAX_MEMBERS` entries before `zipfile` builds an object for
    each of them (300,000 entries are hundreds of MB before any other check could run)."""
    with path.open("rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - (1 << 16) - 22))
        tail = fh.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) < at + 22:
        return  # not a zip: `zipfile` says so in its own words
    count = struct.unpack("<H", tail[at + 10:at + 12])[0]
    zip64 = tail.rfind(b"PK\x06\x06", 0, at)
    if count == 0xFFFF and zip64 >= 0 and len(tail) >= zip64 + 40:
        count = struct.unpack("<Q", tail[zip64 + 32:zip64 + 40])[0]
    if count > MAX_MEMBERS:
        raise bad(shown, f"it claims {count:,} members, more than any session file holds ({MAX_MEMBERS:,})")


def _infos(shown: str, zf: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """Members by name after the checks that need no decompression: names, duplicates, claimed sizes."""
    infos = zf.infolist()
    for info in infos:
        check_member_name(shown, info.filename)
    by_name = {i.filename: i for i in infos}
    if len(by_name) != len(infos):
        raise bad(shown, "a member appears twice")
    if MANIFEST not in by_name:
        raise bad(shown, "it has no manifest.json")
    if sum(i.file_size for i in infos) > MAX_TOTAL_BYTES or any(i.file_size > MAX_MEMBER_BYTES for i in infos):
        raise bad(shown, "members claim to be larger than any session file difflens writes "
                  f"({MAX_MEMBER_BYTES >> 20} MiB each, {MAX_TOTAL_BYTES >> 20} MiB in all)")
    return by_name


def _match(shown: str, files: dict[str, dict[str, Any]], infos: dict[str, zipfile.ZipInfo]) -> None:
    """The manifest lists exactly the other members, with the sizes their zip headers claim."""
    members = set(infos) - {MANIFEST}
    if set(files) != members:
        extra, absent = sorted(members - set(files)), sorted(set(files) - members)
        raise bad(shown, f"members and manifest disagree (unlisted {extra}, missing {absent})")
    for name, entry in files.items():
        if entry["bytes"] != infos[name].file_size:
            raise bad(shown, f"{name} is {infos[name].file_size} bytes in the zip but {entry['bytes']} in the manifest")


def _chunks(shown: str, zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> Iterator[bytes]:
    """The member's bytes in chunks, refused as soon as more than `limit` (or its claimed size) come out."""
    allowed, seen = min(limit, info.file_size), 0
    with zf.open(info) as fh:
        while chunk := fh.read(CHUNK):
            seen += len(chunk)
            if seen > allowed:
                raise bad(shown, f"{info.filename} expands past {allowed} bytes")
            yield chunk


def _read_all(shown: str, zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int,
              entry: dict[str, Any] | None = None) -> bytes:
    """A small member (manifest, session.json) in memory, within `limit` and matching its manifest entry."""
    if info.file_size > limit:
        raise bad(shown, f"{info.filename} is larger than {limit >> 20} MiB")
    data = b"".join(_chunks(shown, zf, info, limit))
    if entry is not None and (len(data) != entry["bytes"] or hashlib.sha256(data).hexdigest() != entry["sha256"]):
        raise bad(shown, f"{info.filename} does not match its sha256 in the manifest (edited or damaged)")
    return data


def _stream(shown: str, zf: zipfile.ZipFile, info: zipfile.ZipInfo, entry: dict[str, Any],
            sink: IO[bytes] | None) -> None:
    """Hash (and copy to `sink`) a result member, checking its safetensors header from the first bytes."""
    digest, size, head = hashlib.sha256(), 0, b""
    header_checked = False
    for chunk in _chunks(shown, zf, info, MAX_MEMBER_BYTES):
        digest.update(chunk)
        size += len(chunk)
        if sink is not None:
            try:
                sink.write(chunk)
            except OSError as exc:
                raise _unwritable(None, exc) from None
        if not header_checked:
            head += chunk
            header_checked = _check_header(shown, info.filename, head, entry["bytes"])
    if not header_checked:
        _check_header(shown, info.filename, head, entry["bytes"], final=True)
    if size != entry["bytes"] or digest.hexdigest() != entry["sha256"]:
        raise bad(shown, f"{info.filename} does not match its sha256 in the manifest (edited or damaged)")


def _check_header(shown: str, name: str, head: bytes, total: int, *, final: bool = False) -> bool:
    """True once the safetensors header in `head` is complete and describes exactly `total` bytes; False while
    more bytes are needed; raises `bad` for a header safetensors would refuse."""
    def refuse(why: str) -> StoreError:
        return bad(shown, f"{name} is not a readable safetensors file ({why})")

    if len(head) < 8:
        if final:
            raise refuse("shorter than its header")
        return False
    n = int.from_bytes(head[:8], "little")
    if n > MAX_HEADER_BYTES or 8 + n > total:
        raise refuse(f"header of {n} bytes")
    if len(head) < 8 + n:
        if final:
            raise refuse("truncated header")
        return False
    try:
        header = jsonvalue.loads(head[8:8 + n])
    except jsonvalue.JsonValueError as exc:
        raise refuse(f"header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise refuse("header is not an object")
    spans = []
    for tensor, spec in header.items():
        if tensor == "__metadata__":
            if not isinstance(spec, dict) or not all(isinstance(v, str) for v in spec.values()):
                raise refuse("metadata is not a map of strings")
            continue
        with contextlib.suppress(KeyError, TypeError, ValueError):
            itemsize = _DTYPE_BYTES[spec["dtype"]]
            shape, (start, end) = spec["shape"], spec["data_offsets"]
            if all(isinstance(d, int) and d >= 0 for d in shape) and isinstance(start, int) and isinstance(end, int) \
                    and end - start == math.prod(shape) * itemsize:
                spans.append((start, end))
                continue
        raise refuse(f"tensor {tensor!r} is described inconsistently")
    spans.sort()
    position = 0
    for start, end in spans:
        if start != position:
            raise refuse("tensor data overlaps or leaves gaps")
        position = end
    if 8 + n + position != total:
        raise refuse("tensor data does not fill the file")
    return True


def _json(shown: str, name: str, data: bytes) -> Any:
    try:
        return jsonvalue.loads(data)
    except jsonvalue.JsonValueError as exc:
        raise bad(shown, f"{name} is not JSON ({exc})") from None


def _parse(shown: str, manifest: dict[str, Any], body: Any, files: dict[str, dict[str, Any]]) -> Bundle:
    """Every row checked against its table's columns and every nested JSON value against its shape."""
    if not isinstance(body, dict) or set(body) != {"session", "actions", "notes", "results"}:
        raise bad(shown, "session.json must hold session, actions, notes and results")
    [session] = check_rows(shown, SESSIONS, [body["session"]], columns(SESSIONS))
    actions = check_rows(shown, ACTIONS, body["actions"], columns(ACTIONS))
    notes = check_rows(shown, NOTES, body["notes"], columns(NOTES))
    results = check_rows(shown, RESULTS, body["results"], columns(RESULTS))
    try:
        sessions.check_name(str(session["name"]))
    except StoreError as exc:
        raise bad(shown, exc.problem) from None
    for row in (*actions, *notes):
        if row["session"] != session["id"] or not str(row["id"]).startswith(f"{session['id']}/"):
            raise bad(shown, f"row {row['id']!r} does not belong to session {session['id']!r}")
    for row in results:
        entry = files.get(result_member(row["key"]))
        if entry is None or row["file"] != f"{row['key']}.safetensors" or row["sha256"] != entry["sha256"] \
                or row["bytes"] != entry["bytes"]:
            raise bad(shown, f"result row {row['key']!r} does not match its file")
    if len(results) != len(files) - 1:
        raise bad(shown, "it holds result files that no result row describes")
    return Bundle(manifest=manifest, session=session, actions=actions, notes=notes, results=results)
