"""`difflens trajectory`: triage a series of finetunes of one base (training checkpoints, the weight
interpolation, hub revisions) on one base pass, as a table of steps, JSON or an HTML page with plots."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from engine.protocol import methods
from engine.protocol.methods import Trajectory
from engine.protocol.report_results import TrajectoryResult
from store.atomic import write_text_atomic
from tui.cli.engine_call import call_engine, target_from
from tui.cli.options import (
    Adapter,
    BatchSize,
    Corpus,
    Device,
    Dtype,
    Engine,
    Json,
    JudgeSpec,
    K,
    Layers,
    N,
    Protocol,
    Remote,
    Seed,
    Sequential,
    TrustRemoteCode,
    adl_request_params,
)
from tui.cli.output import emit_json, fail, out
from tui.render.trajectory_view import cells, summary, trajectory_page

COLUMNS = ("step", "vs null", "z", "criterion", "layer", "gain", "headline tokens")


def parse_points(text: str) -> list[float]:
    """`0,0.25,0.5` → the interpolation points (each in [0, 1], checked again by the engine)."""
    try:
        points = [float(part) for part in text.split(",")]
    except ValueError:
        fail(f"--interpolate {text!r} is not a list of numbers — pass e.g. --interpolate 0,0.25,0.5,0.75,1")
    bad = [p for p in points if not (math.isfinite(p) and 0.0 <= p <= 1.0)]
    if bad:
        fail(f"interpolation point t = {bad[0]:g} is outside [0, 1] — pass points between 0 (the base) and 1 "
             "(the finetune)")
    return points


def trajectory_table(result: TrajectoryResult) -> Table:
    """One row per step; readable steps in bold."""
    table = Table(*COLUMNS, title=f"trajectory: {result.base} → {result.ft} ({result.series}, "
                                  f"{result.n} texts of {result.corpus})", title_justify="left")
    for row in result.steps:
        c = cells(row)
        table.add_row(c.label, c.verdict, c.z, c.score, c.layer, c.gain, c.tokens, style="bold" if row.readable else "")
    return table


def render_trajectory(result: TrajectoryResult) -> None:
    out.print(trajectory_table(result))
    out.print(summary(result), highlight=False)
    out.print(Text(f"each step opens as a run: difflens tui --run RUN (runs in --json); stored as "
                   f"{result.trajectory} ({result.seconds:.0f}s)", style="dim"))


def trajectory(base: Annotated[str | None, typer.Option("--base")] = None,
               ft: Annotated[str | None, typer.Option(
                   "--ft", help="The finetune: an organism or adapter folder ('demo'), or ID@REV1,REV2,… for hub "
                                "revisions.")] = None,
               adapter: Adapter = None,
               checkpoints: Annotated[bool, typer.Option(
                   "--checkpoints", help="The finetune's training checkpoints (organism train --checkpoints N), "
                                         "after step 0 = the base.")] = False,
               interpolate: Annotated[str | None, typer.Option(
                   "--interpolate", help="Points t in [0, 1] of base + t·(ft − base), e.g. 0,0.25,0.5,0.75,1 "
                                         "(LoRA finetunes: the adapter's delta scaled by t).")] = None,
               corpus: Corpus = Trajectory.corpus, n: N = Trajectory.n, k: K = Trajectory.k,
               seed: Seed = Trajectory.seed, layers: Layers = None, device: Device = Trajectory.device,
               dtype: Dtype = Trajectory.dtype, batch_size: BatchSize = Trajectory.batch_size,
               trust_remote_code: TrustRemoteCode = False, sequential: Sequential = False,
               layer: Annotated[str | None, typer.Option("--layer", help="Report layer: N or 'middle' (default: "
                                                         "chosen per step from the evidence).")] = None,
               steer: Annotated[bool, typer.Option("--steer", help="Calibrate and steer every step for the "
                                                   "steering gain (minutes per step on a CPU).")] = False,
               null: Annotated[int, typer.Option("--null", help="Random adapters every step is tested against "
                                                 "(one null, the last step's rank and norm; 0: no test).")]
               = Trajectory.null,
               html: Annotated[Path | None, typer.Option("--html", help="Also write the page with plots to this "
                                                         ".html file.")] = None,
               list_stored: Annotated[bool, typer.Option("--list", help="List stored trajectories.")] = False,
               judge: JudgeSpec = None, protocol: Protocol = None, json: Json = False, remote: Remote = None,
               engine: Engine = None) -> None:
    """Watch a trace appear: triage each step of a series of finetunes of one base (one base pass, one null)."""
    target = target_from(remote, engine)
    if list_stored:
        listed = call_engine(methods.TRAJECTORIES, methods.NoParams(), title="listing", target=target)
        if json:
            emit_json(listed)
            return
        table = Table("trajectory", "series", "base", "finetuned", "steps", title_justify="left")
        for row in listed.trajectories:
            table.add_row(row.trajectory, row.series, row.base, row.ft, str(row.steps))
        out.print(table)
        return
    if not base or not ft:
        fail("trajectory needs --base and --ft — e.g. difflens trajectory --base gemma-3-270m --ft demo "
             "--interpolate 0,0.25,0.5,0.75,1")
    params = adl_request_params(base, ft, adapter, corpus, n, k, seed, layers, device, dtype, batch_size,
                            trust_remote_code, sequential)
    params |= {"layer": layer, "steer": steer, "judge": judge, "protocol": protocol, "null": null,
               "checkpoints": checkpoints, "interpolate": parse_points(interpolate) if interpolate else None}
    result = call_engine(methods.TRAJECTORY, Trajectory(**params), title="trajectory", target=target)
    if html is not None:
        write_text_atomic(html, trajectory_page(result))
    if json:
        emit_json(result)
        return
    render_trajectory(result)
    if html is not None:
        out.print(f"page written to {html}", highlight=False)
