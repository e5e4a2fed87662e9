"""The triage report in the terminal: where the trace is per layer, what the diff's tokens say there, Patchscope,
what steering writes and the headline against the null (the HTML page is `report_html.py`)."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from engine.protocol.report_results import PaperBlock, TriageReport
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


def layer_table(report: TriageReport) -> Table:
    """Per layer: the criterion (with a bar), mean ‖Δ‖/‖base‖ and relevance; the report layer in bold."""
    table = Table("layer", "criterion", "", "‖Δ‖/‖base‖", "relevance", title_justify="left",
                  title="where the trace is, per layer (positions ≥ 1)")
    for row in layer_profile(report):
        score = row.criterion
        table.add_row(str(row.layer), "—" if score is None else f"{score:.2f}",
                      Text("█" * round(20 * (score or 0.0)), style="cyan"), f"{row.rel_norm:.3f}",
                      "—" if row.relevance is None else f"{row.relevance:.2f}",
                      style="bold" if row.layer == report.layer else "")
    return table


def chosen_layer_tokens(report: TriageReport, positions: list[str], n: int = 8) -> Table:
    """The top logit-lens tokens of the mean diff at the report layer, one row per position."""
    row = report.layer_row()
    table = Table("pos", "‖Δ‖/‖base‖", "top tokens", title_justify="left",
                  title=f"logit lens of the mean diff at layer {report.layer} ({_head(report)} head;"
                        " every layer: --grid)")
    for p in positions:
        table.add_row(p, f"{row[p].rel_norm:.3f}", tokens_text(row[p].logit_lens[:n]))
    return table


def _head(report: TriageReport) -> str:
    """The head that read the diff's logit lens (a report from before lens heads does not say)."""
    return report.lens_heads.diff or "unrecorded"


def token_grid(report: TriageReport, positions: list[str], cells: int) -> Table:
    """Every layer × position: the top tokens of the mean diff."""
    table = Table("layer", *[f"pos {p}" for p in positions], title_justify="left",
                  title=f"logit lens of the mean diff ({_head(report)} head)")
    for layer, row in layers_in_order(report.layers):
        table.add_row(layer, *[tokens_text(row[p].logit_lens[:cells]) for p in positions],
                      style="bold" if int(layer) == report.layer else "")
    return table


def report_view(report: TriageReport, cells: int = 3, samples: int = 2, grid: bool = False) -> Group:
    """The human report: where the trace is, what it says, what steering writes, the hypothesis."""
    parts: list[RenderableType] = [
        Panel.fit(Text.assemble((f"{report.base} → {report.ft}", "bold"), f"   run {report.run}\n"
                  f"{report.n} texts of {report.corpus}, first {report.k} tokens, "
                  f"report layer {report.layer} of {report.n_layers}, protocol {report.protocol}"),
                  title="difflens triage")]
    if report.description:
        parts.append(Text(f"known finetune: {report.description[:300]}", style="dim"))
    if report.judges:
        parts.append(Text("judges: " + "; ".join(f"{kind} by {who}" for kind, who in report.judges.items()),
                          style="dim"))
    positions = [str(p) for p in range(report.k)]
    parts.append(layer_table(report))
    if grid:
        parts.append(token_grid(report, positions, cells))
    else:
        parts.append(chosen_layer_tokens(report, positions))
    if report.layer_choice is not None:
        parts.append(Text(layer_choice_text(report.layer_choice), style="dim"))
    scope = Table("pos", "scale", "Patchscope selected tokens", title=f"Patchscope at layer {report.layer}",
                  title_justify="left")
    for p in positions:
        cell = report.layer_row()[p].patchscope
        if cell is not None and cell.chosen_by.startswith("ungraded"):
            scope.add_row(p, "—", Text(f"{cell.chosen_by} (every scale is in --json)", style="yellow"))
        elif cell is not None:
            scope.add_row(p, f"{cell.best_scale:g}", ", ".join(cell.selected[:10]) or "—")
    parts.append(scope)
    for p, steering in report.steering.items():
        steer = Table("prompt", f"steered (α={steering.strength:.3g})", "unsteered", show_lines=True,
                      title=f"steering at layer {report.layer}, position {p}", title_justify="left")
        for s in steering.prompts[:samples]:
            steer.add_row(s.prompt, s.steered[:240], s.unsteered[:240])
        if steering.prompts:
            parts.append(steer)
        else:
            parts.append(f"position {p}: no coherent steering strength found")
        if steering.ungraded:
            parts.append(Text(f"position {p}: {steering.ungraded} calibration samples ungraded by the judge "
                              "(counted as not coherent)", style="yellow"))
    if (summary := report.relevance_summary) is not None:
        parts.append(Text(f"token relevance (top-20 of the diff lens): best layer {summary.best_layer} "
                          f"mean {summary.best_layer_mean_diff_relevance:.2f}"
                          + (f"; best cell {summary.best_cell.summary()}" if summary.best_cell else "")
                          + (f"; {summary.ungraded_cells} cells ungraded" if summary.ungraded_cells else "")))
    if report.paper is not None:
        parts.append(paper_tables(report, report.paper))
    if (sim := report.steering_similarity) is not None:
        parts.append(Text(f"steering similarity to training texts: steered {sim.steered:.3f} vs unsteered "
                          f"{sim.unsteered:.3f} (gain {sim.gain:+.3f})"))
    parts.append(significance_panel(report))
    parts.append(Text("timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in report.timings.items()), style="dim"))
    return Group(*parts)


def paper_tables(report: TriageReport, paper: PaperBlock) -> Text | Table:
    """`--protocol paper`: the chosen Patchscope scale of the difference, base and finetuned means per position,
    and the reference's token relevance per target, source and variant, means over positions."""
    scales = "; ".join(f"{variant} " + ", ".join(f"{c.best_scale:g}" for c in cells)
                       for variant, cells in paper.patchscope.items())
    rows = paper_relevance_rows(report)
    if not rows:
        return Text(f"Patchscope scale per position: {scales}; no token relevance (nothing describes the "
                    "finetune: pass --description)", style="dim")
    table = Table("target", "source", "variant", *PAPER_SHARES.values(), "positions", title_justify="left",
                  caption=f"Patchscope scale per position: {scales}", caption_justify="left",
                  title=f"token relevance as the reference grades it (protocol paper, layer {report.layer}; "
                        "self = the description, else a baseline organism's; every cell in --json)")
    for row in rows:
        table.add_row(row.target, row.source, row.variant, *[share_text(row.shares[s]) for s in PAPER_SHARES],
                      f"{row.graded}" + (f" ({row.ungraded} ungraded)" if row.ungraded else ""),
                      style="bold" if row.target == "self" else "")
    return table


def significance_panel(report: TriageReport) -> Panel:
    """The headline: the hypothesis when the evidence clears its null, else "no readable trace", with the numbers."""
    text, title, readable = headline_parts(report)
    return Panel(text, title=plain(title), title_align="left", border_style="" if readable else "yellow")
