"""`difflens ndif models`: what NDIF serves now (the models `--backend ndif` can run)."""

from __future__ import annotations

import typer
from rich.table import Table
from rich.text import Text

from engine.protocol import methods
from tui.cli.engine_call import call_engine, target_from
from tui.cli.options import Engine, Json, Remote
from tui.cli.output import emit_json, out

app = typer.Typer(help="NDIF: run the traces on the National Deep Inference Fabric (docs/NDIF.md).",
                  no_args_is_help=True)


@app.command()
def models(json: Json = False, remote: Remote = None, engine: Engine = None) -> None:
    """List the models NDIF has deployed; RUNNING ones answer now."""
    result = call_engine(methods.NDIF_MODELS, methods.NoParams(),
                         title="asking NDIF", target=target_from(remote, engine))
    if json:
        emit_json(result)
        return
    table = Table("model", "revision", "state", "level", title=f"NDIF at {result.host}")
    for m in result.models:
        style = "green" if m.state == "RUNNING" else "yellow"
        table.add_row(m.repo_id, m.revision, Text(m.state, style=style), m.level)
    out.print(table)
