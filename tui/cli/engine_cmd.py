"""`difflens engine ...`: hands the command line to `python -m engine` (the CLI may not import the engine)."""

from __future__ import annotations

import os

import typer

from tui.client import child_env, engine_argv


def engine(ctx: typer.Context) -> None:
    """Run and manage the engine process: serve [--stdio|--socket|--tcp], start, stop, status, attach --stdio."""
    argv = engine_argv(*ctx.args)
    os.execve(argv[0], argv, child_env())
