"""Session files in tests: a recorded session, a whole-store fingerprint ("untouched" means equal to it), and
exported files rewritten member by member the way a hand editor or an attacker would."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from store import bundle, results, sessions
from store.paths import db_path, home


def recorded_session(name: str = "cake study") -> sessions.Session:
    """A session with two results, three actions (one left in flight) and a note."""
    run = results.save("adl", {"pair": name}, {"mean_diff": np.arange(24, dtype=np.float32).reshape(2, 3, 4)},
                       {"n_layers": 2}, seconds=1.5)
    lens = results.save("lens", {"run": run.key}, {"probs": np.linspace(0, 1, 10, dtype=np.float32)}, {})
    s = sessions.create(name)
    a = sessions.begin_action(s.id, "adl.summary", {"run": run.key}, "call")
    sessions.finish_action(a, result={"run": run.key, "base": "b", "ft": "f", "k": 3})
    a = sessions.begin_action(s.id, "readout.logit_lens", {"run": run.key, "layer": 1, "pos": 2}, "call")
    sessions.finish_action(a, result={"tokens": [["cake", 0.5]], "key": lens.key}, events=[{"type": "partial"}])
    sessions.begin_action(s.id, "steer.generate", {"run": run.key}, "job")
    sessions.add_note(s.id, "layer 1 says cake", {"row": 1, "pos": 2})
    sessions.save_ui(s.id, {"heat": {"row": 1, "pos": 2}})
    return sessions.get(s.id)


def store_state() -> dict[str, Any]:
    """Every row of every table and every file's hash under the store: 'untouched' means equal to this."""
    with sqlite3.connect(db_path()) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        rows = {t: sorted(map(repr, conn.execute(f"SELECT * FROM [{t}]").fetchall())) for t in tables}
    files = {str(p.relative_to(home())): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted(home().rglob("*")) if p.is_file() and not p.name.startswith("difflens.sqlite")}
    return {"rows": rows, "files": files}


def rewrite(src: Path, dst: Path, change: dict[str, bytes | None], manifest_too: bool = False) -> Path:
    """A copy of a session file with members replaced (None drops one); optionally a manifest to match."""
    with zipfile.ZipFile(src) as zf:
        members = {i.filename: zf.read(i) for i in zf.infolist()}
    for name, data in change.items():
        if data is None:
            members.pop(name, None)
        else:
            members[name] = data
    if manifest_too:
        manifest = json.loads(members["manifest.json"])
        for name, data in members.items():
            if name != "manifest.json":
                manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        members["manifest.json"] = json.dumps(manifest).encode()
    with zipfile.ZipFile(dst, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return dst


def exported_session(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """A good session file (its session deleted from the store again) and its session.json body."""
    s = recorded_session()
    good = bundle.export_session(s.name, tmp_path / "good.difflens")
    sessions.delete(s.id)
    return good, json.loads(bundle_member(good, "session.json"))


def bundle_member(path: Path, name: str) -> bytes:
    """One member of a session file, as stored."""
    with zipfile.ZipFile(path) as zf:
        return zf.read(name)


def with_body(good: Path, dst: Path, body: dict[str, Any] | str) -> Path:
    """A copy of `good` whose session.json is `body`, its manifest made to match (so only the body is wrong)."""
    data = body if isinstance(body, str) else json.dumps(body)
    return rewrite(good, dst, {"session.json": data.encode()}, manifest_too=True)
