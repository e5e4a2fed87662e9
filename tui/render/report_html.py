"""Static, self-contained HTML triage reports: an index page and one page per pair.

Rendered from the JSON the engine returns (`triage.board` with `reports`), so this module needs no torch.
No scripts, fonts or stylesheets are fetched: the page reads offline. Every string from a model or a
file (tokens, steered text, names, errors) is HTML-escaped. The heatmap's palette is viridis (readable
with the common colour-vision deficiencies, and in greyscale), scaled over positions ≥ 1 so that
position 0's outsized vector does not flatten the rest (it is clipped and marked ▲).
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

from store.atomic import write_text_atomic
from tui.render.significance import board_verdict, headline_parts

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
""".replace("GRADIENT", ",".join(VIRIDIS))


def esc(value: Any) -> str:
    """Text for HTML: escaped, quotes included, NULs and other C0 controls (but tab/newline) made visible."""
    text = re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", "\ufffd", str(value))
    return html.escape(text, quote=True)


def token(text: Any) -> str:
    """A token as code, with newlines visible (tokens are often whitespace)."""
    return f"<code>{esc(str(text).replace(chr(10), '↵'))}</code>"


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


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body>\n{body}\n</body></html>\n")


def _score(value: Any) -> str:
    return "—" if value is None else f"{float(value):.3f}"


def heatmap(report: dict[str, Any]) -> str:
    """Layer × position table of ‖Δ‖/‖base‖, coloured, with each cell's top logit-lens token, and each layer's
    score under the layer criterion."""
    positions = [str(p) for p in range(int(report["k"]))]
    rows = report["layers"]
    choice = report.get("layer_choice") or {}
    scores = choice.get("scores", {})
    scaled = [p for p in positions if p != "0"] or positions
    top = max((float(rows[lay][p]["rel_norm"]) for lay in rows for p in scaled), default=0.0) or 1.0
    head = "".join(f"<th>pos {esc(p)}</th>" for p in positions)
    lines = [f'<table class="heat" id="heatmap"><tr><th>layer</th><th>criterion</th>{head}</tr>']
    for layer, row in rows.items():
        cls = ' class="report"' if int(layer) == int(report["layer"]) else ""
        cells = [f'<td class="crit">{_score(scores.get(layer))}</td>']
        for p in positions:
            cell = row[p]
            value = float(cell["rel_norm"])
            bg, fg = colour(value / top)
            lens = cell.get("logit_lens") or []
            word = esc(str(lens[0][0]).replace("\n", "↵")) if lens else ""
            clipped = " ▲" if value > top else ""
            cells.append(f'<td style="background:{bg};color:{fg}" title="‖Δ‖ {esc(cell["norm"])}">'
                         f"{value:.3f}{clipped}<br>{word}</td>")
        lines.append(f"<tr{cls}><th>{esc(layer)}</th>{''.join(cells)}</tr>")
    lines.append("</table>")
    legend = (f'<p class="dim">‖Δ‖/‖base‖, colour 0 <span class="legend"></span> {top:.3f} (max over positions ≥ 1;'
              f" larger values clipped ▲); outlined row: report layer {esc(report['layer'])}; text: top logit-lens"
              " token of the mean diff.</p>")
    if choice:
        legend += f'<p class="dim" id="layer-choice">{esc(layer_choice_text(choice))}</p>'
    return "\n".join(lines) + legend


def judges(report: dict[str, Any]) -> str:
    """Which judge produced the coherence, relevance and Patchscope numbers (reports before judges: none)."""
    named = report.get("judges") or {}
    items = " · ".join(f"{esc(kind)} by {esc(who)}" for kind, who in named.items())
    return f'<p class="meta" id="judges">judges: {items}</p>' if items else ""


def layer_choice_text(choice: dict[str, Any]) -> str:
    """Why the report reads the layer it reads (the HTML page and the terminal report say the same)."""
    why = {"criterion": "chosen by the layer criterion (the highest score; near-ties go to the middle layer)",
           "user": "given with --layer", "middle": "the middle layer (relative depth 0.5)"}[choice["by"]]
    scores = {int(layer): float(score) for layer, score in choice["scores"].items()}
    best = max(scores, key=lambda layer: scores[layer], default=None)
    tail = f"; best score {scores[best]:.2f} at layer {best}" if best is not None else ""
    return f"report layer {choice['layer']}: {why}; middle layer {choice['middle']}{tail}."


def top_tokens(report: dict[str, Any], n: int = 10) -> str:
    """Logit lens and Patchscope tokens at the report layer, per position."""
    row = report["layers"][str(report["layer"])]
    lines = ['<table id="top-tokens"><tr><th>pos</th><th>logit lens of the mean diff</th>'
             "<th>Patchscope (selected)</th></tr>"]
    for p in [str(p) for p in report["positions"]]:
        lens = " ".join(f"{token(t)}&nbsp;{float(q):.2f}" for t, q in row[p]["logit_lens"][:n])
        scope = row[p].get("patchscope")
        chosen = " ".join(token(t) for t in scope["selected"][:n]) if scope else ""
        if scope and str(scope.get("chosen_by", "")).startswith("ungraded"):
            chosen = f'<span class="err">{esc(scope["chosen_by"])}</span>'
        lines.append(f"<tr><td>{esc(p)}</td><td>{lens}</td><td>{chosen or '—'}</td></tr>")
    return "\n".join(lines) + "</table>"


def steering(report: dict[str, Any], samples: int = 3) -> str:
    """Steered vs unsteered samples at each position's calibrated strength."""
    cells = report.get("steering") or {}
    if not cells:
        return '<p class="dim">No steering in this report (steering off, or a zero difference).</p>'
    parts = []
    for p, cell in cells.items():
        parts.append(f"<h3>position {esc(p)} · α = {float(cell['strength']):.3g}</h3>")
        if not cell["prompts"]:
            parts.append('<p class="dim">no coherent steering strength found</p>')
            continue
        parts.append('<table class="steer"><tr><th>prompt</th><th>steered</th><th>unsteered</th></tr>')
        for s in cell["prompts"][:samples]:
            parts.append(f'<tr><td class="txt">{esc(s["prompt"])}</td><td class="txt steered">{esc(s["steered"])}'
                         f'</td><td class="txt">{esc(s["unsteered"])}</td></tr>')
        parts.append("</table>")
    return "\n".join(parts)


def _hypothesis(entry: dict[str, Any]) -> str:
    """The headline: the hypothesis when the trace clears its null (with the numbers), else the verdict."""
    text, _, readable = headline_parts({**(entry.get("report") or {}), "hypothesis": None})
    verdict = f'<p class="{"dim" if readable else "err"}" id="significance">{esc(text)}</p>'
    if not entry.get("hypothesis") or not readable:
        return verdict
    source = f'<div class="src">{esc(entry.get("hypothesis_source") or "")}</div>'
    return f'<div class="hyp" id="hypothesis"><b>Hypothesis:</b> {esc(entry["hypothesis"])}{source}</div>{verdict}'


def pair_page(entry: dict[str, Any], definition: str = "") -> str:
    """One pair: score, hypothesis, heatmap, top tokens, steering (or its error)."""
    title = f"{entry['name']}: {entry['base']} → {entry['ft']}"
    head = f'<p><a href="index.html">← board</a></p><h1>{esc(title)}</h1>'
    if entry.get("error"):
        return _page(title, f'{head}<div class="err"><b>failed:</b> {esc(entry["error"])}</div>')
    report = entry["report"]
    trace = entry.get("trace") or {}
    meta = (f'<p class="meta">run <code>{esc(report["run"])}</code> · {esc(report["n"])} texts of '
            f'{esc(report["corpus"])} · first {esc(report["k"])} tokens · report layer {esc(report["layer"])} of '
            f'{esc(report["n_layers"])}</p>')
    known = f'<p class="meta">known finetune: {esc(entry.get("description") or report.get("description"))}</p>' \
        if entry.get("description") or report.get("description") else ""
    known += judges(report)
    parts = [f"<b>trace strength {_score(entry.get('score'))}</b>"]
    if trace:
        parts += [f"peak ‖Δ‖/‖base‖ {_score(trace.get('peak_rel_norm'))}",
                  f"concentration {_score(trace.get('concentration'))}",
                  f"coherence {_score(trace.get('coherence'))}",
                  "recurring tokens " + (" ".join(token(t) for t in trace.get("tokens") or []) or "—")]
    score = f'<p id="score">{" · ".join(parts)}</p>' + (f'<p class="dim">{esc(definition)}</p>' if definition else "")
    body = [head, meta, known, score, _hypothesis(entry), "<h2>Where the difference is</h2>", heatmap(report),
            f"<h2>What it reads as (layer {esc(report['layer'])})</h2>", top_tokens(report),
            "<h2>Steering: steered vs unsteered</h2>", steering(report)]
    return _page(title, "\n".join(body))


def index_page(board: dict[str, Any], pages: list[str | None]) -> str:
    """The board: pairs by score with links to their pages."""
    top = max((float(p["score"]) for p in board["pairs"] if p.get("score") is not None), default=0.0) or 1.0
    lines = ['<table id="board"><tr><th>#</th><th>pair</th><th>base</th><th>finetuned</th><th>vs null</th>'
             "<th>score</th><th>hypothesis</th></tr>"]
    for rank, (pair, page) in enumerate(zip(board["pairs"], pages, strict=True), start=1):
        ft = pair["ft"] + (f" + {pair['adapter']}" if pair.get("adapter") else "")
        if pair.get("error"):
            cell = f'<td colspan="3" class="err">{esc(pair["error"])}</td>'
        else:
            width = round(80 * float(pair["score"]) / top)
            cell = (f"<td>{esc(board_verdict(pair))}</td>"
                    f'<td class="score">{_score(pair["score"])} <span class="bar" style="width:{width}px"></span></td>'
                    f"<td>{esc(pair.get('hypothesis') or '')}</td>")
        name = f'<a href="{esc(page)}">{esc(pair["name"])}</a>' if page else esc(pair["name"])
        lines.append(f"<tr><td>{rank}</td><td>{name}</td><td>{esc(pair['base'])}</td><td>{esc(ft)}</td>{cell}</tr>")
    lines.append("</table>")
    definition = f'<p class="dim">{esc(board["score_definition"])}</p>' if board.get("score_definition") else ""
    title = f"difflens triage board: {board.get('name') or 'pairs'}"
    return _page(title, f"<h1>{esc(title)}</h1>{definition}" + "\n".join(lines))


def write_report(directory: Path, board: dict[str, Any]) -> Path:
    """Write index.html and one page per pair into `directory` (each file atomically); returns the index."""
    pages = [page_name(i, p["name"]) if p.get("error") or p.get("report") else None
             for i, p in enumerate(board["pairs"])]
    definition = board.get("score_definition", "")
    for pair, page in zip(board["pairs"], pages, strict=True):
        if page:
            write_text_atomic(directory / page, pair_page(pair, definition))
    index = directory / "index.html"
    write_text_atomic(index, index_page(board, pages))
    return index
