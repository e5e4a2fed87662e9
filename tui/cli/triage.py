"""`difflens triage`: one pair from models to a readable report (or JSON)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from engine.protocol import methods
from engine.protocol.methods import TriagePair as Pair
from tui.cli.board import run_board, single_pair_board, typed_params
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
    compute_params,
)
from tui.cli.output import emit_json, fail, out
from tui.cli.readouts import tokens_text
from tui.render.plain_text import plain
from tui.render.report_data import PAPER_SHARES, layer_choice_text, layer_profile, paper_relevance_rows, share_text
from tui.render.significance import headline_parts


def layer_table(report: dict[str, Any]) -> Table:
    """Per layer: the criterion (with a bar), mean ‖Δ‖/‖base‖ and relevance; the report layer in bold."""
    table = Table("layer", "criterion", "", "‖Δ‖/‖base‖", "relevance", title_justify="left",
                  title="where the trace is, per layer (positions ≥ 1)")
    for row in layer_profile(report):
        score = row.criterion
        table.add_row(str(row.layer), "—" if score is None else f"{score:.2f}",
                      Text("█" * round(20 * (score or 0.0)), style="cyan"), f"{row.rel_norm:.3f}",
                      "—" if row.relevance is None else f"{row.relevance:.2f}",
                      style="bold" if row.layer == report["layer"] else "")
    return table


def chosen_layer_tokens(report: dict[str, Any], positions: list[str], n: int = 8) -> Table:
    """The top logit-lens tokens of the mean diff at the report layer, one row per position."""
    row = report["layers"][str(report["layer"])]
    table = Table("pos", "‖Δ‖/‖base‖", "top tokens", title_justify="left",
                  title=f"logit lens of the mean diff at layer {report['layer']} ({report['lens_heads']['diff']} head;"
                        " every layer: --grid)")
    for p in positions:
        table.add_row(p, f"{row[p]['rel_norm']:.3f}", tokens_text(row[p]["logit_lens"][:n]))
    return table


def token_grid(report: dict[str, Any], positions: list[str], cells: int) -> Table:
    """Every layer × position: the top tokens of the mean diff."""
    table = Table("layer", *[f"pos {p}" for p in positions], title_justify="left",
                  title=f"logit lens of the mean diff ({report['lens_heads']['diff']} head)")
    for layer, row in report["layers"].items():
        table.add_row(layer, *[tokens_text(row[p]["logit_lens"][:cells]) for p in positions],
                      style="bold" if int(layer) == report["layer"] else "")
    return table


def render_report(report: dict[str, Any], cells: int = 3, samples: int = 2, grid: bool = False) -> None:
    """The human report: where the trace is, what it says, what steering writes, the hypothesis."""
    out.print(Panel.fit(Text.assemble((f"{report['base']} → {report['ft']}", "bold"), f"   run {report['run']}\n"
                        f"{report['n']} texts of {report['corpus']}, first {report['k']} tokens, "
                        f"report layer {report['layer']} of {report['n_layers']}, "
                        f"protocol {report.get('protocol', 'default')}"), title="difflens triage"))
    if report.get("description"):
        out.print(Text(f"known finetune: {report['description'][:300]}", style="dim"))
    if judges := report.get("judges"):
        out.print(Text("judges: " + "; ".join(f"{kind} by {who}" for kind, who in judges.items()), style="dim"))
    positions = [str(p) for p in range(report["k"])]
    out.print(layer_table(report))
    if grid:
        out.print(token_grid(report, positions, cells))
    else:
        out.print(chosen_layer_tokens(report, positions))
    if choice := report.get("layer_choice"):
        out.print(Text(layer_choice_text(choice), style="dim"))
    scope = Table("pos", "scale", "Patchscope selected tokens", title=f"Patchscope at layer {report['layer']}",
                  title_justify="left")
    for p in positions:
        cell = report["layers"][str(report["layer"])][p]["patchscope"]
        if cell and str(cell.get("chosen_by", "")).startswith("ungraded"):
            scope.add_row(p, "—", Text(f"{cell['chosen_by']} (every scale is in --json)", style="yellow"))
        elif cell:
            scope.add_row(p, f"{cell['best_scale']:g}", ", ".join(cell["selected"][:10]) or "—")
    out.print(scope)
    for p, cell in (report.get("steering") or {}).items():
        steer = Table("prompt", f"steered (α={cell['strength']:.3g})", "unsteered", show_lines=True,
                      title=f"steering at layer {report['layer']}, position {p}", title_justify="left")
        for s in cell["prompts"][:samples]:
            steer.add_row(s["prompt"], s["steered"][:240], s["unsteered"][:240])
        if cell["prompts"]:
            out.print(steer)
        else:
            out.print(f"position {p}: no coherent steering strength found")
        if cell.get("ungraded"):
            out.print(Text(f"position {p}: {cell['ungraded']} calibration samples ungraded by the judge "
                           "(counted as not coherent)", style="yellow"))
    if summary := report.get("relevance_summary"):
        out.print(f"token relevance (top-20 of the diff lens): best layer {summary['best_layer']} "
                  f"mean {summary['best_layer_mean_diff_relevance']:.2f}; best cell {summary['best_cell']}"
                  + (f"; {summary['ungraded_cells']} cells ungraded" if summary.get("ungraded_cells") else ""),
                  highlight=False)
    if report.get("paper"):
        out.print(paper_tables(report))
    if sim := report.get("steering_similarity"):
        out.print(f"steering similarity to training texts: steered {sim['steered']:.3f} vs unsteered "
                  f"{sim['unsteered']:.3f} (gain {sim['gain']:+.3f})", highlight=False)
    out.print(significance_panel(report))
    out.print(Text("timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in report["timings"].items()), style="dim"))


def paper_tables(report: dict[str, Any]) -> Text | Table:
    """`--protocol paper`: the chosen Patchscope scale of the difference, base and finetuned means per position,
    and the reference's token relevance per target, source and variant, means over positions."""
    scales = "; ".join(f"{variant} " + ", ".join(f"{c['best_scale']:g}" for c in cells)
                       for variant, cells in report["paper"]["patchscope"].items())
    rows = paper_relevance_rows(report)
    if not rows:
        return Text(f"Patchscope scale per position: {scales}; no token relevance (nothing describes the "
                    "finetune: pass --description)", style="dim")
    table = Table("target", "source", "variant", *PAPER_SHARES.values(), "positions", title_justify="left",
                  caption=f"Patchscope scale per position: {scales}", caption_justify="left",
                  title=f"token relevance as the reference grades it (protocol paper, layer {report['layer']}; "
                        "self = the description, else a baseline organism's; every cell in --json)")
    for row in rows:
        table.add_row(row.target, row.source, row.variant, *[share_text(row.shares[s]) for s in PAPER_SHARES],
                      f"{row.graded}" + (f" ({row.ungraded} ungraded)" if row.ungraded else ""),
                      style="bold" if row.target == "self" else "")
    return table


def significance_panel(report: dict[str, Any]) -> Panel:
    """The headline: the hypothesis when the evidence clears its null, else "no readable trace", with the numbers."""
    text, title, readable = headline_parts(report)
    return Panel(text, title=plain(title), title_align="left", border_style="" if readable else "yellow")


def triage(ctx: typer.Context, base: Annotated[str | None, typer.Option("--base")] = None,
           ft: Annotated[str | None, typer.Option("--ft")] = None, adapter: Adapter = None,
           corpus: Corpus = Pair.corpus, n: N = Pair.n, k: K = Pair.k, seed: Seed = Pair.seed, layers: Layers = None,
           device: Device = Pair.device, dtype: Dtype = Pair.dtype, batch_size: BatchSize = Pair.batch_size,
           trust_remote_code: TrustRemoteCode = False, sequential: Sequential = False,
           layer: Annotated[str | None, typer.Option("--layer", help="Report layer: N or 'middle' (default: "
                                                     "chosen from the evidence, see docs/method.md).")] = None,
           description: Annotated[str | None, typer.Option("--description", help="Known finetune domain.")] = None,
           no_steer: Annotated[bool, typer.Option("--no-steer", help="Skip calibration and steering.")] = False,
           prompts: Annotated[int, typer.Option("--prompts", help="Steering prompts from the shipped set.")]
           = Pair.n_prompts,
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
           = Pair.null,
           judge: JudgeSpec = None, protocol: Protocol = None, json: Json = False, remote: Remote = None,
           engine: Engine = None) -> None:
    """Compute + logit lens + Patchscope + calibrated steering for a pair, as one readable report."""
    if pairs is not None:
        if base or ft or adapter:
            fail("--pairs and --base/--ft/--adapter are mutually exclusive — put the pairs in the file")
        run_board(pairs, typed_params(ctx, locals()), json=json, html=html, target=target_from(remote, engine))
        return
    if not base or not ft:
        fail("triage needs --base and --ft (or --pairs FILE) — e.g. difflens triage --base gemma-3-270m --ft demo")
    params = compute_params(base, ft, adapter, corpus, n, k, seed, layers, device, dtype, batch_size,
                            trust_remote_code, sequential)
    params |= {"layer": layer, "description": description, "steer": not no_steer, "n_prompts": prompts,
               "judge": judge, "protocol": protocol, "null": null}
    if html is not None:
        report = single_pair_board(params | {"llm": llm}, html, target_from(remote, engine))
    else:
        report = call_engine(methods.TRIAGE_PAIR, Pair(**params), title="triage", target=target_from(remote, engine))
    if json:
        emit_json(report)
    else:
        render_report(report, grid=grid)
