"""The HTML report's charts, as inline SVG: the per-layer profile, Patchscope across scales, steering's
similarity gain and the board's ranking."""

from __future__ import annotations

from engine.protocol.report_results import TriageBoardResult, TriageReport
from tui.render.report_data import layer_profile, patchscope_curves
from tui.render.svg_plots import Bar, Series, bar_chart, line_chart
from tui.render.token_text import visible_token


def layer_profile_chart(report: TriageReport) -> str:
    """Criterion, ‖Δ‖/‖base‖ (relative to its strongest layer) and relevance per layer, the report layer marked."""
    rows = layer_profile(report)
    peak = max((r.rel_norm for r in rows), default=0.0) or 1.0
    series = [Series("criterion", [r.criterion for r in rows]),
              Series(f"‖Δ‖/‖base‖ ÷ {peak:.3g}", [r.rel_norm / peak for r in rows])]
    if any(r.relevance is not None for r in rows):
        series.append(Series("relevance", [r.relevance for r in rows]))
    return line_chart("layer-profile", "Where the trace is: per layer (positions ≥ 1)", [r.layer for r in rows],
                      series, x_label="layer", y_label="score / share", marked_x=report.layer,
                      marked_label=f"report layer {report.layer}")


def patchscope_charts(report: TriageReport) -> list[str]:
    """One chart per position: each selected token's Patchscope probability over the positive scales."""
    return [line_chart(f"patchscope-pos-{curve.pos}", f"Patchscope, position {curve.pos}: token probability by scale",
                       curve.scales, [Series(visible_token(t).plain, v) for t, v in curve.tokens.items()],
                       x_label="scale (log)", y_label="probability", marked_x=curve.best_scale,
                       marked_label=f"chosen {curve.best_scale:g}" if curve.best_scale else "",
                       log_x=min(curve.scales) > 0 and len(curve.scales) > 1, height=220)
            for curve in patchscope_curves(report)]


def steering_chart(report: TriageReport) -> str:
    """Similarity of steered and unsteered samples to the finetuning texts, and the gain ("" without one)."""
    sim = report.steering_similarity
    if sim is None:
        return ""
    bars = [Bar("steered", sim.steered), Bar("unsteered", sim.unsteered), Bar("gain (steered − unsteered)", sim.gain)]
    return bar_chart("steering-similarity", "Similarity to the finetuning texts (MiniLM cosine)", bars)


def board_chart(board: TriageBoardResult) -> str:
    """The board's pairs by trace strength, in rank order (a failed pair shows its failure)."""
    bars = [Bar(f"{rank}. {pair.name}", pair.score, "failed" if pair.error else "")
            for rank, pair in enumerate(board.pairs, start=1)]
    return bar_chart("board-ranking", "Trace strength by pair", bars)
