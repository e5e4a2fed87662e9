"""`difflens tui` and `difflens demo`: open the Textual workbench."""

from __future__ import annotations

from typing import Annotated

import typer

from store.errors import ActionableError
from tui.cli.engine_call import target_from
from tui.cli.options import Engine, Remote
from tui.cli.output import fail


def tui(run: Annotated[str | None, typer.Option("--run", help="Open this cached run.")] = None,
        session: Annotated[str | None, typer.Option("--session", help="Record into this named session.")] = None,
        remote: Remote = None, engine: Engine = None) -> None:
    """Open the workbench (start screen: cached runs, saved sessions)."""
    from tui.app import run_workbench  # Textual: only the workbench commands pay its import

    try:
        run_workbench(target_from(remote, engine), run_id=run, session=session)
    except ActionableError as exc:
        fail(str(exc))


def demo(remote: Remote = None, engine: Engine = None) -> None:
    """Open the workbench on the embedded default pair (gemma-3-270m vs the cake demo organism)."""
    from tui.app import run_workbench  # Textual: only the workbench commands pay its import

    run_workbench(target_from(remote, engine), demo=True)
