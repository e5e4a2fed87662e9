"""`difflens triage`: one pair from models to a readable report (or JSON)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from engine.protocol import methods
from engine.protocol.methods import TriageSettings as Settings
from tui.cli.board import run_board, single_pair_board, typed_settings
from tui.cli.engine_call import call_engine, target_from, typed
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
from tui.render.report_terminal import report_view


def triage(ctx: typer.Context, base: Annotated[str | None, typer.Option("--base")] = None,
           ft: Annotated[str | None, typer.Option("--ft")] = None, adapter: Adapter = None,
           corpus: Corpus = Settings.corpus, n: N = Settings.n, k: K = Settings.k, seed: Seed = Settings.seed,
           layers: Layers = None, device: Device = Settings.device, dtype: Dtype = Settings.dtype,
           batch_size: BatchSize = Settings.batch_size, trust_remote_code: TrustRemoteCode = Settings.trust_remote_code,
           sequential: Sequential = Settings.sequential,
           layer: Annotated[str | None, typer.Option("--layer", help="Report layer: N or 'middle' (default: "
                                                     "chosen from the evidence, see docs/method.md).")]
           = None,
           description: Annotated[str | None, typer.Option("--description", help="Known finetune domain.")]
           = Settings.description,
           no_steer: Annotated[bool, typer.Option("--no-steer", help="Skip calibration and steering.")]
           = not Settings.steer,
           prompts: Annotated[int, typer.Option("--prompts", help="Steering prompts from the shipped set.")]
           = Settings.n_prompts,
           pairs: Annotated[str | None, typer.Option("--pairs", help="Triage the pairs of a .yaml/.csv file "
                                                     "(name,base,ft[,adapter,description]) as a board, or "
                                                     "hub:BASE_ID[?TEXT]: the base's finetunes and adapters "
                                                     "on the hub.")] = None,
           limit: Annotated[int | None, typer.Option("--limit", help="With --pairs: at most this many pairs.")]
           = None,
           devices: Annotated[str | None, typer.Option("--devices", help="With --pairs: run pairs in parallel, "
                                                       "one worker per device, e.g. cuda:0,cuda:1.")] = None,
           ray: Annotated[str | None, typer.Option("--ray", help="With --pairs: run base groups as tasks on a Ray "
                                                   "cluster: auto (the local one) or HOST:6379 / "
                                                   "ray://HOST:10001.")] = None,
           html: Annotated[Path | None, typer.Option("--html", help="Also write static HTML pages to DIR.")] = None,
           llm: Annotated[str | None, typer.Option("--llm", help="LLM for the board's hypotheses (default: "
                                                   "the configured one, else keywords).")] = None,
           grid: Annotated[bool, typer.Option("--grid", help="Print the full layer × position token grid.")]
           = False,
           null: Annotated[int, typer.Option("--null", help="Random adapters of the finetune's rank and norm the "
                                             "report is tested against (0: no test; see docs/significance.md).")]
           = Settings.null,
           null_steer: Annotated[bool, typer.Option("--null-steer", help="Also steer the null's adapters to test "
                                                    "the steering gain (one calibration per adapter).")]
           = Settings.null_steer,
           judge: JudgeSpec = None, protocol: Protocol = None, json: Json = False, remote: Remote = None,
           engine: Engine = None) -> None:
    """Compute + logit lens + Patchscope + calibrated steering for a pair, as one readable report."""
    settings = adl_request_params(base or "", ft or "", adapter, corpus, n, k, seed, layers, device, dtype,
                                  batch_size, trust_remote_code, sequential)
    settings |= {"layer": layer, "description": description, "steer": not no_steer, "n_prompts": prompts,
                 "judge": judge, "protocol": protocol, "null": null, "null_steer": null_steer}
    if pairs is not None:
        if base or ft or adapter:
            fail("--pairs and --base/--ft/--adapter are mutually exclusive — put the pairs in the file")
        board = {"settings": typed_settings(ctx, settings), "llm": llm, "limit": limit, "devices": devices, "ray": ray}
        run_board(pairs, board, json=json, html=html, target=target_from(remote, engine))
        return
    if not base or not ft:
        fail("triage needs --base and --ft (or --pairs FILE) — e.g. difflens triage --base gemma-3-270m --ft demo")
    pair = typed(methods.TRIAGE_PAIR, settings)
    if html is not None:
        report = single_pair_board(pair, llm, html, target_from(remote, engine))
    else:
        report = call_engine(methods.TRIAGE_PAIR, pair, title="triage", target=target_from(remote, engine))
    if json:
        emit_json(report.to_json())
    else:
        out.print(report_view(report, grid=grid))
