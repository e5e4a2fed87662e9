"""Static, self-contained HTML triage reports: an index page and one page per pair.

Rendered from the typed board the engine returns (`triage.board` with `reports`), so this module needs no torch.
The pages are Jinja2 templates (`templates/`) with autoescape on: every string from a model or a file (tokens,
steered text, names, errors) is escaped by the template, and control characters are made visible first. Charts
are inline SVG (`svg_plots`); no scripts, fonts or stylesheets are fetched: the page reads offline. The heatmap's
palette is viridis (readable with the common colour-vision deficiencies, and in greyscale), scaled over positions
≥ 1 so that position 0's outsized vector does not flatten the rest (it is clipped and marked ▲).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from engine.protocol.report_results import BoardEntry, TriageBoardResult, TriageReport
from engine.protocol.results import token_pairs
from store.atomic import write_text_atomic
from tui.render.plain_text import printable
from tui.render.report_charts import board_chart, layer_profile_chart, patchscope_charts, steering_chart
from tui.render.report_data import (
    PAPER_SHARES,
    layer_choice_text,
    layers_in_order,
    paper_relevance_rows,
    read_positions,
    share_text,
)
from tui.render.significance import headline_parts

VIRIDIS = ["#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58", "#b5de2b",
           "#fde725"]
CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;max-width:1180px;
color:#1b1b1b;background:#fff;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
.meta{color:#555}.hyp{background:#f3f6fb;border-left:4px solid #3e4989;padding:10px 14px;margin:14px 0}
.hyp .src{color:#666;font-size:12px}.err{background:#fdecea;border-left:4px solid #b00020;padding:10px 14px}
table{border-collapse:collapse;margin:6px 0;max-width:100%}#top-tokens,table.steer{table-layout:fixed;width:100%}
#top-tokens th:first-child{width:3em}table.steer th:first-child{width:24%}
th,td{border:1px solid #ddd;padding:4px 7px;vertical-align:top}
th{background:#f5f5f5;text-align:left}code{font:12px ui-monospace,Menlo,Consolas,monospace;background:#f3f3f3;
padding:0 3px;border-radius:3px;white-space:pre-wrap;overflow-wrap:anywhere}
table.heat td{text-align:center;font:12px ui-monospace,Menlo,Consolas,monospace;min-width:84px;border:1px solid #fff}
table.heat tr.report td,table.heat tr.report th{outline:2px solid #000;outline-offset:-2px}
td.txt{white-space:pre-wrap;overflow-wrap:anywhere;font:12px ui-monospace,Menlo,Consolas,monospace}
.bar{display:inline-block;height:10px;background:#31688e;vertical-align:middle}
.legend{display:inline-block;width:240px;height:12px;vertical-align:middle;border:1px solid #999;
background:linear-gradient(90deg,GRADIENT)}
.dim{color:#777}td.score{white-space:nowrap}
figure{margin:8px 0}svg.chart{max-width:100%;height:auto;display:block}
""".replace("GRADIENT", ",".join(VIRIDIS))
STYLE = Markup(CSS)  # our own constant, inside <style>: escaping it would break the CSS's quoted font names




def _visible(value: Any) -> Any:
    """Every value a template prints: control characters made visible, as the CLI and the TUI print them."""
    if isinstance(value, Markup) or not isinstance(value, str):
        return value
    return printable(value)


def _token(text: Any) -> str:
    """A token with its newlines visible (tokens are often whitespace)."""
    return str(text).replace("\n", "↵")


PAGES = Environment(loader=PackageLoader("tui.render", "templates"), autoescape=select_autoescape(["html"]),
                    finalize=_visible)
PAGES.filters["tok"] = _token
PAGES.filters["share"] = share_text


def colour(t: float) -> tuple[str, str]:
    """Viridis background for t in [0, 1] and a readable text colour on it."""
    t = min(1.0, max(0.0, t))
    step = t * (len(VIRIDIS) - 1)
    lo = int(step)
    hi = min(lo + 1, len(VIRIDIS) - 1)
    a, b = (tuple(int(c[i:i + 2], 16) for i in (1, 3, 5)) for c in (VIRIDIS[lo], VIRIDIS[hi]))
    mix = tuple(round(x + (y - x) * (step - lo)) for x, y in zip(a, b, strict=True))
    return "#" + "".join(f"{c:02x}" for c in mix), ("#000" if t > 0.55 else "#fff")


def page_name(index: int, name: str) -> str:
    """A safe, unique file name for a pair's page."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")[:48] or "pair"
    return f"{index + 1:02d}-{slug}.html"


def _score(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def heatmap(report: TriageReport) -> Markup:
    """Layer × position table of ‖Δ‖/‖base‖, coloured, with each cell's top logit-lens token, and each layer's
    score under the layer criterion."""
    positions = [str(p) for p in range(report.k)]
    layers = report.layers
    choice = report.layer_choice
    scores = choice.scores if choice is not None else {}
    top = max((layers[lay][p].rel_norm for lay in layers for p in read_positions(report)), default=0.0) or 1.0
    rows = []
    for layer, row in layers_in_order(layers):
        cells = []
        for p in positions:
            value = row[p].rel_norm
            bg, fg = colour(value / top)
            lens = token_pairs(row[p].logit_lens)
            cells.append({"bg": bg, "fg": fg, "norm": row[p].norm, "value": value, "clipped": value > top,
                          "word": _token(lens[0][0]) if lens else ""})
        rows.append({"layer": layer, "report": int(layer) == report.layer,
                     "criterion": _score(scores.get(layer)), "cells": cells})
    return Markup(PAGES.get_template("heatmap.html").render(
        positions=positions, rows=rows, top=top, layer=report.layer,
        choice_text=layer_choice_text(choice) if choice is not None else ""))


def _top_tokens(report: TriageReport, n: int = 10) -> list[dict[str, Any]]:
    """Logit lens and Patchscope tokens at the report layer, per position."""
    row = report.layer_row()
    out = []
    for p in [str(p) for p in report.read_positions()]:
        scope = row[p].patchscope
        ungraded = scope.chosen_by if scope is not None else ""
        out.append({"pos": p, "lens": list(token_pairs(row[p].logit_lens[:n])),
                    "scope": scope.selected[:n] if scope is not None else [],
                    "ungraded": ungraded if ungraded.startswith("ungraded") else ""})
    return out


def _steering(report: TriageReport, samples: int = 3) -> list[dict[str, Any]]:
    """Steered vs unsteered samples at each position's calibrated strength."""
    return [{"pos": p, "strength": cell.strength, "prompts": cell.prompts[:samples]}
            for p, cell in report.steering.items()]


def pair_page(entry: BoardEntry, definition: str = "") -> str:
    """One pair: score, hypothesis, per-layer profile and heatmap, top tokens and Patchscope across scales,
    steering's similarity gain and samples (or the pair's error)."""
    title = f"{entry.name}: {entry.base} → {entry.ft}"
    page = PAGES.get_template("pair.html")
    report = entry.report
    if entry.error or report is None:
        return page.render(title=title, css=STYLE, error=entry.error or "the board kept no report for this pair")
    trace = entry.trace
    verdict, _, readable = headline_parts(report, with_hypothesis=False)
    parts = [f"peak ‖Δ‖/‖base‖ {_score(trace.peak_rel_norm)}", f"concentration {_score(trace.concentration)}",
             f"coherence {_score(trace.coherence)}"] if trace is not None else []
    return page.render(
        title=title, css=STYLE, report=report, description=entry.description or report.description,
        judges=report.judges, score=_score(entry.score), trace_parts=parts,
        trace_tokens=trace.tokens if trace is not None else None, definition=definition,
        hypothesis=entry.hypothesis, hypothesis_source=entry.hypothesis_source or "",
        verdict=verdict, readable=readable,
        profile_chart=Markup(layer_profile_chart(report)), heatmap=heatmap(report), top_tokens=_top_tokens(report),
        patchscope_charts=[Markup(c) for c in patchscope_charts(report)],
        steering_chart=Markup(steering_chart(report)), steering=_steering(report), paper=report.paper,
        paper_rows=paper_relevance_rows(report), paper_shares=PAPER_SHARES)


def index_page(board: TriageBoardResult, pages: list[str | None]) -> str:
    """The board: a bar chart of the ranking, then the pairs by score with links to their pages."""
    top = max((p.score for p in board.pairs if p.score is not None), default=0.0) or 1.0
    rows = [{"rank": rank, "page": page, "name": pair.name, "base": pair.base,
             "ft": pair.ft + (f" + {pair.adapter}" if pair.adapter else ""), "error": pair.error,
             "score": _score(pair.score), "hypothesis": pair.hypothesis or "", "verdict": pair.verdict(),
             "width": round(80 * pair.score / top) if pair.score is not None else 0}
            for rank, (pair, page) in enumerate(zip(board.pairs, pages, strict=True), start=1)]
    title = f"difflens triage board: {board.name or 'pairs'}"
    return PAGES.get_template("index.html").render(title=title, css=STYLE, rows=rows,
                                                   definition=board.score_definition or None,
                                                   ranking_chart=Markup(board_chart(board)))


def write_report(directory: Path, board: TriageBoardResult) -> Path:
    """Write index.html and one page per pair into `directory` (each file atomically); returns the index."""
    pages = [page_name(i, p.name) if p.error or p.report is not None else None for i, p in enumerate(board.pairs)]
    for pair, page in zip(board.pairs, pages, strict=True):
        if page:
            write_text_atomic(directory / page, pair_page(pair, board.score_definition))
    index = directory / "index.html"
    write_text_atomic(index, index_page(board, pages))
    return index
