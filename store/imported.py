"""Results that came inside someone else's session file, kept apart from the results this machine computed.

A session file's tensors are whatever its author put there (hashes can be made consistent with forged tensors),
so they serve the export and display of the session that carried them and nothing else: they live in their own
table (`imported_results`, one row per session and key) and under `tensors/imported/<sha256>.safetensors`,
where `store.results.load`/`lookup` — which answer every new computation — never look.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from store.db import connect
from store.paths import tensors_dir
from store.schema import IMPORTED


def directory() -> Path:
    path = tensors_dir() / "imported"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def file_for(sha256: str) -> Path:
    """Content-addressed: two sessions carrying the same bytes share one file; different bytes never collide."""
    return directory() / f"{sha256}.safetensors"


def row_for(session: str, result: dict[str, Any]) -> dict[str, Any]:
    """The imported row for a result row of a session file (its own file name, its session)."""
    return {**result, "id": f"{session}/{result['key']}", "session": session, "file": file_for(result["sha256"]).name}


def rows(session: str, keys: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """The imported result rows of `session` (all, or those with the given keys), as stored."""
    table = connect()[IMPORTED]
    found = [dict(r) for r in table.rows_where("session = ?", [session], order_by="key")]
    wanted = set(keys) if keys is not None else None
    return [r for r in found if wanted is None or r["key"] in wanted]


def row(key: str, session: str) -> dict[str, Any] | None:
    found = rows(session, [key])
    return found[0] if found else None


def as_result_row(imported: dict[str, Any]) -> dict[str, Any]:
    """An imported row in the `results` table's shape (for exporting the session again)."""
    out = {k: v for k, v in imported.items() if k not in ("id", "session")}
    out["file"] = f"{imported['key']}.safetensors"
    return out


def forget(conn: Any, session: str) -> list[Path]:
    """Delete `session`'s imported rows inside the caller's transaction; the files no other row uses."""
    shas = {r[0] for r in conn.execute(f"SELECT sha256 FROM {IMPORTED} WHERE session = ?", [session]).fetchall()}
    conn.execute(f"DELETE FROM {IMPORTED} WHERE session = ?", [session])
    still = {r[0] for r in conn.execute(f"SELECT DISTINCT sha256 FROM {IMPORTED}").fetchall()}
    return [file_for(sha) for sha in sorted(shas - still)]
