"""The `difflens` command: thin typer wrappers, each over one engine method."""

from __future__ import annotations

import typer

from engine.protocol.redact import redact_logs
from tui.cli import (
    agent,
    bench,
    compute,
    engine_cmd,
    lenses,
    ndif,
    organism,
    readouts,
    sessions,
    trajectory,
    triage,
    workbench,
)

app = typer.Typer(help="difflens — read what a finetune changed from the difference of activations.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
app.command()(compute.compute)
app.command()(compute.runs)
app.command()(readouts.tokens)
app.command()(readouts.steer)
app.command()(triage.triage)
app.command()(trajectory.trajectory)
app.command()(agent.agent)
app.command()(workbench.tui)
app.command()(workbench.demo)
app.add_typer(organism.app, name="organism")
app.add_typer(ndif.app, name="ndif")
app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True,
                              "help_option_names": []})(engine_cmd.engine)
lenses.register(app)
bench.register(app)
sessions.register(app)


def main() -> None:
    redact_logs()
    app()
