"""The `difflens` command: thin typer wrappers, each over one engine method."""

from __future__ import annotations

import typer

from tui.cli import compute

app = typer.Typer(help="difflens — read what a finetune changed from the difference of activations.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
app.command()(compute.compute)
app.command()(compute.runs)


def main() -> None:
    app()
