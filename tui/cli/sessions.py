"""`difflens sessions list|show|rename|delete|export|import` and `difflens replay` (torch-free: store only).

`register(app)` adds them to the main typer app.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from store import bundle, sessions
from store.db import store_error
from store.errors import ActionableError
from tui.cli.engine_call import target_from
from tui.cli.options import Engine, Json, Remote, TrustRemoteCode
from tui.cli.output import emit_json, err, fail, out
from tui.client import EngineError
from tui.sessions.compare import compare_table
from tui.sessions.files import saved_sessions
from tui.sessions.rerun import rerun_steps
from tui.sessions.source import load_source

sessions_app = typer.Typer(help="Saved analyses: list, show, rename, delete, export to a file, import one.",
                           no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
SessionRef = Annotated[str, typer.Argument(help="Session name or id (or a .difflens file where it says so).")]


def _when(t: Any) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(float(t))) if t else ""


def _guard(run: Any) -> Any:
    """Store problems (a damaged or read-only database, a file where a directory belongs) become one line,
    problem and fix, and exit code 2."""
    try:
        return run()
    except ActionableError as exc:
        fail(str(exc))
    except sqlite3.Error as exc:
        fail(str(store_error(exc)))
    except OSError as exc:
        fail(f"cannot use {exc.filename or 'the store'} ({exc.strerror or exc}) — check the path, its permissions "
             "and DIFFLENS_HOME")


@sessions_app.command("list")
def list_sessions(json: Json = False) -> None:
    """Sessions in the store, and session files in the sessions/ directory."""
    rows = _guard(saved_sessions)
    if json:
        emit_json(rows)
        return
    table = Table("session", "id", "base", "finetuned", "actions", "notes", "updated", "where")
    for r in rows:
        table.add_row(str(r["name"]), str(r.get("id", "")), str(r.get("base", "")), str(r.get("ft", "")),
                      str(r.get("actions", "")), str(r.get("notes", "")), _when(r.get("updated")),
                      str(r.get("error") or r["where"]))
    out.print(table if rows else "no saved sessions — ctrl+s in the workbench saves one")


@sessions_app.command()
def show(session: SessionRef, json: Json = False) -> None:
    """A session's actions, notes and saved view (a store session, or a .difflens file)."""
    source = _guard(lambda: load_source(session))
    if json:
        emit_json({"id": source.id, "name": source.name, "base": source.base, "ft": source.ft, "run": source.run,
                   "ui": source.ui, "actions": source.actions, "notes": source.notes})
        return
    out.print(Text.assemble((source.name, "bold"), f"  ({source.id})  {source.base} → {source.ft}  "
                                                   f"run {source.run or '—'}"), highlight=False)
    table = Table("#", "method", "params", "refs", "seconds")
    for a in source.actions:
        params = ", ".join(f"{k}={v}" for k, v in a["params"].items() if k != "run" and v is not None)
        table.add_row(str(a["seq"]), a["method"], params[:80], ", ".join(a["refs"])[:40], f"{a['seconds']:.1f}")
    out.print(table)
    for n in source.notes:
        out.print(f"note {n['seq']} ({_when(n['t'])}, {n['cell']}): {n['text']}", highlight=False)


@sessions_app.command()
def rename(session: SessionRef, new_name: Annotated[str, typer.Argument(help="The new name.")]) -> None:
    """Give a session another name."""
    renamed = _guard(lambda: sessions.rename(session, new_name))
    out.print(Text.assemble("renamed to ", (renamed.name, "bold")))


@sessions_app.command()
def delete(session: SessionRef,
           yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False) -> None:
    """Delete a session (the cached results it used stay in the store)."""
    found = _guard(lambda: sessions.get(session))
    if not yes and not typer.confirm(f"delete session {found.name!r}?"):
        fail("not deleted", code=1)
    _guard(lambda: sessions.delete(found.id))
    out.print(f"deleted session {found.name}")


@sessions_app.command()
def export(session: SessionRef,
           output: Annotated[Path | None, typer.Option("--output", "-o", help="File or directory to write "
                                                       "(default: the current directory).")] = None) -> None:
    """Write a session and every result it shows into one self-contained .difflens file (never into the
    install's own sessions/: that is the shipped demos' place)."""
    path = _guard(lambda: bundle.export_session(session, output or Path.cwd()))
    out.print(f"exported to {path} ({path.stat().st_size / 1e6:.2f} MB)", highlight=False)


@sessions_app.command("import")
def import_session(file: Annotated[Path, typer.Argument(help="A .difflens session file.")],
                   name: Annotated[str | None, typer.Option("--name", help="Import under this name.")] = None) -> None:
    """Verify a session file (hashes, schema, paths) and add it to the store, all or nothing."""
    imported = _guard(lambda: bundle.import_bundle(file, name))
    out.print(Text.assemble("imported session ", (imported.name, "bold"), f" ({imported.id})"))


def replay(session: SessionRef,
           rerun: Annotated[bool, typer.Option("--rerun", help="Ask the same questions of another pair.")] = False,
           base: Annotated[str | None, typer.Option("--base", help="Base model for --rerun.")] = None,
           ft: Annotated[str | None, typer.Option("--ft", help="Finetuned model for --rerun.")] = None,
           adapter: Annotated[str | None, typer.Option("--adapter", help="Adapter for --rerun's --ft.")] = None,
           corpus: Annotated[str | None, typer.Option("--corpus", help="Corpus for --rerun (default: self: for "
                                                      "the diff, generic: for a lens; never the session's).")] = None,
           print_only: Annotated[bool, typer.Option("--print", help="Print the side-by-side table instead "
                                                    "of opening it.")] = False,
           trust_remote_code: TrustRemoteCode = False, remote: Remote = None, engine: Engine = None) -> None:
    """Open a saved session (name, id or .difflens file) with no engine; --rerun re-asks it on a new pair."""
    if not rerun:
        if base or ft:
            fail("--base/--ft only make sense with --rerun")
        from tui.cli.replay import replay_app  # Textual: only `replay` pays its import

        _guard(lambda: replay_app(session)).run()
        return
    if not base or not ft:
        fail("--rerun needs --base and --ft (the new pair)")

    def step(i: int, total: int, method: str) -> None:
        err.print(f"[{i + 1}/{total}] {method}", highlight=False)

    try:
        old, new, steps = _guard(lambda: rerun_steps(session, base, ft, adapter, target_from(remote, engine), step,
                                                          trust_remote_code, corpus))
    except EngineError as exc:
        fail(f"engine: {exc}", code=3)
    if print_only:
        out.print(compare_table(steps, old, new))
    else:
        from tui.cli.replay import compare_app  # Textual: only the interactive view pays its import

        compare_app(old, new, steps).run()


def register(app: typer.Typer) -> None:
    """Add `sessions ...` and `replay` to the main `difflens` command."""
    app.add_typer(sessions_app, name="sessions")
    app.command()(replay)
