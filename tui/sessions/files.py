"""Where session files live: the repository's `sessions/` (the shipped demo, default export target) and the store.

`saved_sessions()` is what the start screen lists: sessions in the store, then session files in `sessions/`
that are not imported (opening one replays it straight from the file).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from store import bundle, sessions
from store.errors import ActionableError

SESSIONS_DIR_ENV = "DIFFLENS_SESSIONS_DIR"
_REPO = Path(__file__).resolve().parents[2]


def sessions_dir() -> Path:
    """`$DIFFLENS_SESSIONS_DIR`, else the repository's `sessions/` (source checkout), else `./sessions`."""
    if os.environ.get(SESSIONS_DIR_ENV):
        return Path(os.environ[SESSIONS_DIR_ENV])
    return _REPO / "sessions" if (_REPO / "pyproject.toml").is_file() else Path.cwd() / "sessions"


def session_files() -> list[Path]:
    folder = sessions_dir()
    return sorted(folder.glob(f"*{bundle.EXTENSION}")) if folder.is_dir() else []


def saved_sessions() -> list[dict[str, Any]]:
    """Store sessions (`key` = id) and unimported session files (`key` = path), newest store session first."""
    rows = [{**s, "key": s["id"], "where": "store"} for s in sessions.list_sessions()]
    known = {s["id"] for s in rows}
    for path in session_files():
        try:
            info = bundle.describe(bundle.read_bundle(path, results=False))
        except ActionableError as exc:
            rows.append({"key": str(path), "name": path.name, "where": "file", "error": exc.problem})
            continue
        if info["id"] not in known:
            rows.append({**info, "key": str(path), "where": path.name})
    return rows
