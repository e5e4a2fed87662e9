"""Regenerate the shipped demo session: `python -m tui.cli.record_demo` (then commit sessions/demo.difflens).

Drives the real workbench headless against an engine on the embedded pair (base gemma-3-270m, ft demo):
computes the run, stays on the report layer the criterion chose (or moves to `--layer`), reads the logit lens
and Patchscope there, steers, optionally runs the agent, and exports the recorded session. Every step is what a
user's keys would do, so the file replays to exactly these panes. `--base/--ft/--corpus/-n/-k` record any
other pair the same way.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from store import bundle, sessions
from store.errors import ActionableError, StoreError
from tui.app import DiffLensApp
from tui.client import connect
from tui.sessions.files import sessions_dir
from tui.state import DEMO_PAIR, Start
from tui.widgets.pair_bar import PairBar


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tui.cli.record_demo", description=__doc__.splitlines()[0])
    p.add_argument("--name", default="gemma-3-270m demo", help="session name in the store")
    p.add_argument("--output", type=Path, default=None, help="file to write (default: sessions/demo.difflens)")
    p.add_argument("--base", default=DEMO_PAIR["base"])
    p.add_argument("--ft", default=DEMO_PAIR["ft"])
    p.add_argument("--corpus", default=None)
    p.add_argument("-n", type=int, default=None)
    p.add_argument("-k", type=int, default=None)
    p.add_argument("--layer", type=int, default=None, help="layer to read (default: the report layer the "
                   "workbench opens on, chosen from the evidence)")
    p.add_argument("--agent", action="store_true", help="also run the agent (needs an LLM configured)")
    p.add_argument("--engine", default=None, help="engine target (default: local engine or a private child)")
    p.add_argument("--replace", action="store_true", help="delete an existing session of that name first")
    return p.parse_args(argv)


async def _settle(pilot: Any) -> None:
    for _ in range(3):
        await pilot.pause()
        await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def script(args: argparse.Namespace) -> Any:
    """The keys a user would press, waiting for each answer."""
    async def drive(pilot: Any) -> None:
        app = pilot.app
        while not (app.screen.query(PairBar) and app.screen.query_one(PairBar).view.pair):
            await pilot.pause(0.5)
            if app.link.lost:
                app.exit(message="the engine went away")
                return
        await _settle(pilot)
        heat = app.screen.model.heat
        target = heat.layers.index(args.layer) if args.layer in heat.layers else heat.row
        for _ in range(abs(target - heat.row)):
            await pilot.press("down" if target > heat.row else "up")
        await _settle(pilot)
        for key in ("p", "r", *(("g",) if args.agent else ())):
            await pilot.press(key)
            await _settle(pilot)
        await app.action_quit()

    return drive


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    params = {k: v for k, v in {"base": args.base, "ft": args.ft, "corpus": args.corpus, "n": args.n,
                                "k": args.k}.items() if v is not None}
    try:
        if args.replace and sessions.find(args.name) is not None:
            sessions.delete(args.name)
        if sessions.find(args.name) is not None:
            raise StoreError(f"session {args.name!r} exists", "pass --replace or another --name")
        app = DiffLensApp(client_factory=lambda: connect(args.engine), start=Start(compute=params), session=args.name)
        app.run(headless=True, auto_pilot=script(args), size=(160, 48))
        recorded = sessions.get(args.name)
        methods = [a["method"] for a in sessions.actions(recorded.id)]
        output = args.output or sessions_dir() / f"demo{bundle.EXTENSION}"
        path = bundle.export_session(recorded.id, output)
    except ActionableError as exc:
        sys.exit(f"error: {exc}")
    print(f"recorded {len(methods)} actions ({', '.join(sorted(set(methods)))}); wrote {path} "
          f"({path.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
