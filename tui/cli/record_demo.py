"""Regenerate the shipped demo session: `python -m tui.cli.record_demo` (then commit sessions/demo.difflens).

Drives the real workbench headless against an engine on the embedded pair (base gemma-3-270m, ft demo):
computes the run, stays on the report layer the criterion chose (or moves to `--layer`), reads the logit lens
and Patchscope there, steers, optionally runs the agent, and exports the recorded session. Every step is what a
user's keys would do, so the file replays to exactly these panes. `--base/--ft/--corpus/-n/-k` record any
other pair the same way.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from store import bundle, sessions
from store.errors import ActionableError, StoreError
from tui.app import DiffLensApp
from tui.client import connect
from tui.sessions.files import sessions_dir
from tui.state import DEMO_PAIR, Start
from tui.widgets.pair_bar import PairBar


async def _settle(pilot: Any) -> None:
    for _ in range(3):
        await pilot.pause()
        await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def script(layer: int | None, agent: bool) -> Any:
    """The keys a user would press (move to `layer`, read, steer, the agent if asked), waiting for each answer."""
    async def drive(pilot: Any) -> None:
        app = pilot.app
        while not (app.screen.query(PairBar) and app.screen.query_one(PairBar).view.pair):
            await pilot.pause(0.5)
            if app.link.lost:
                app.exit(message="the engine went away")
                return
        await _settle(pilot)
        heat = app.screen.model.heat
        target = heat.layers.index(layer) if layer in heat.layers else heat.row
        for _ in range(abs(target - heat.row)):
            await pilot.press("down" if target > heat.row else "up")
        await _settle(pilot)
        for key in ("p", "r", *(("g",) if agent else ())):
            await pilot.press(key)
            await _settle(pilot)
        await app.action_quit()

    return drive


def main(name: Annotated[str, typer.Option("--name", help="Session name in the store.")] = "gemma-3-270m demo",
         output: Annotated[Path | None, typer.Option(
             "--output", help="File to write (default: sessions/demo.difflens).")] = None,
         base: Annotated[str, typer.Option("--base", help="Base model.")] = DEMO_PAIR["base"],
         ft: Annotated[str, typer.Option("--ft", help="Finetuned model.")] = DEMO_PAIR["ft"],
         corpus: Annotated[str | None, typer.Option("--corpus", help="Corpus (default: the engine's).")] = None,
         n: Annotated[int | None, typer.Option("-n", help="Texts (default: the engine's).")] = None,
         k: Annotated[int | None, typer.Option("-k", help="Positions (default: the engine's).")] = None,
         layer: Annotated[int | None, typer.Option(
             "--layer", help="Layer to read (default: the report layer the workbench opens on).")] = None,
         agent: Annotated[bool, typer.Option("--agent", help="Also run the agent (needs an LLM configured).")] = False,
         engine: Annotated[str | None, typer.Option(
             "--engine", help="Engine target (default: local engine or a private child).")] = None,
         replace: Annotated[bool, typer.Option(
             "--replace", help="Delete an existing session of that name first.")] = False) -> None:
    """Record the shipped demo session through the real workbench and export it."""
    params = {key: value for key, value in {"base": base, "ft": ft, "corpus": corpus, "n": n, "k": k}.items()
              if value is not None}
    try:
        if replace and sessions.find(name) is not None:
            sessions.delete(name)
        if sessions.find(name) is not None:
            raise StoreError(f"session {name!r} exists", "pass --replace or another --name")
        app = DiffLensApp(client_factory=lambda: connect(engine), start=Start(compute=params), session=name)
        app.run(headless=True, auto_pilot=script(layer, agent), size=(160, 48))
        recorded = sessions.get(name)
        methods = [a["method"] for a in sessions.actions(recorded.id)]
        path = bundle.export_session(recorded.id, output or sessions_dir() / f"demo{bundle.EXTENSION}")
    except ActionableError as exc:
        sys.exit(f"error: {exc}")
    print(f"recorded {len(methods)} actions ({', '.join(sorted(set(methods)))}); wrote {path} "
          f"({path.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    typer.run(main)
