"""The triage report in the terminal: where the trace is per layer, what the diff's tokens say there, Patchscope,
what steering writes and the headline against the null (the HTML page is `report_html.py`)."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from tui.render.plain_text import plain
from tui.render.report_data import (
    PAPER_SHARES,
    layer_choice_text,
    layer_profile,
    layers_in_order,
    paper_relevance_rows,
    share_text,
)
from tui.render.significance import headline_parts
from tui.render.token_text import tokens_text


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
    for layer, row in layers_in_order(report["layers"]):
        table.add_row(layer, *[tokens_text(row[p]["logit_lens"][:cells]) for p in positions],
                      style="bold" if int(layer) == report["layer"] else "")
    return table


def report_view(report: dict[str, Any], cells: int = 3, samples: int = 2, grid: bool = False) -> Group:
    """The human report: where the trace is, what it says, what steering writes, the hypothesis."""
    parts: list[RenderableType] = [
        Panel.fit(Text.assemble((f"{report['base']} → {report['ft']}", "bold"), f"   run {report['run']}\n"
                  f"{report['n']} texts of {report['corpus']}, first {report['k']} tokens, "
                  f"report layer {report['layer']} of {report['n_layers']}, "
                  f"protocol {report.get('protocol', 'default')}"), title="difflens triage")]
    if report.get("description"):
        parts.append(Text(f"known finetune: {report['description'][:300]}", style="dim"))
    if judges := report.get("judges"):
        parts.append(Text("judges: " + "; ".join(f"{kind} by {who}" for kind, who in judges.items()), style="dim"))
    positions = [str(p) for p in range(report["k"])]
    parts.append(layer_table(report))
    if grid:
        parts.append(token_grid(report, positions, cells))
    else:
        parts.append(chosen_layer_tokens(report, positions))
    if choice := report.get("layer_choice"):
        parts.append(Text(layer_choice_text(choice), style="dim"))
    scope = Table("pos", "scale", "Patchscope selected tokens", title=f"Patchscope at layer {report['layer']}",
                  title_justify="left")
    for p in positions:
        cell = report["layers"][str(report["layer"])][p]["patchscope"]
        if cell and str(cell.get("chosen_by", "")).startswith("ungraded"):
            scope.add_row(p, "—", Text(f"{cell['chosen_by']} (every scale is in --json)", style="yellow"))
        elif cell:
            scope.add_row(p, f"{cell['best_scale']:g}", ", ".join(cell["selected"][:10]) or "—")
    parts.append(scope)
    for p, cell in (report.get("steering") or {}).items():
        steer = Table("prompt", f"steered (α={cell['strength']:.3g})", "unsteered", show_lines=True,
                      title=f"steering at layer {report['layer']}, position {p}", title_justify="left")
        for s in cell["prompts"][:samples]:
            steer.add_row(s["prompt"], s["steered"][:240], s["unsteered"][:240])
        if cell["prompts"]:
            parts.append(steer)
        else:
            parts.append(f"position {p}: no coherent steering strength found")
        if cell.get("ungraded"):
            parts.append(Text(f"position {p}: {cell['ungraded']} calibration samples ungraded by the judge "
                              "(counted as not coherent)", style="yellow"))
    if summary := report.get("relevance_summary"):
        parts.append(Text(f"token relevance (top-20 of the diff lens): best layer {summary['best_layer']} "
                          f"mean {summary['best_layer_mean_diff_relevance']:.2f}; best cell {summary['best_cell']}"
                          + (f"; {summary['ungraded_cells']} cells ungraded" if summary.get("ungraded_cells")
                             else "")))
    if report.get("paper"):
        parts.append(paper_tables(report))
    if sim := report.get("steering_similarity"):
        parts.append(Text(f"steering similarity to training texts: steered {sim['steered']:.3f} vs unsteered "
                          f"{sim['unsteered']:.3f} (gain {sim['gain']:+.3f})"))
    parts.append(significance_panel(report))
    parts.append(Text("timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in report["timings"].items()), style="dim"))
    return Group(*parts)


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
