"""What the triage report's renderers (terminal, HTML) read out of the engine's typed report, written once.

Reports before a field existed (no layer choice, no relevance, no steering) give None where the field is missing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

from engine.protocol.report_results import RelevanceMeans, TriageReport
from engine.protocol.results import LayerChoice, token_pairs

T = TypeVar("T")


@dataclass(frozen=True)
class LayerRow:
    """One layer of the per-layer profile: the criterion's score, the mean ‖Δ‖/‖base‖ over the read positions
    (positions ≥ 1, as the criterion and the heatmap's colour scale read them) and the mean token relevance."""

    layer: int
    criterion: float | None
    rel_norm: float
    relevance: float | None


def read_positions(report: TriageReport) -> list[str]:
    """Positions ≥ 1 (position 0's outsized vector only when k = 1)."""
    positions = [str(p) for p in range(report.k)]
    return [p for p in positions if p != "0"] or positions


def layer_profile(report: TriageReport) -> list[LayerRow]:
    """The per-layer picture of where the trace is and why the report layer was chosen."""
    scores = report.layer_choice.scores if report.layer_choice is not None else {}
    relevance = report.relevance_summary.per_layer_mean if report.relevance_summary is not None else {}
    read = read_positions(report)
    return [LayerRow(layer=int(layer), criterion=scores.get(layer),
                     rel_norm=sum(row[p].rel_norm for p in read) / len(read), relevance=relevance.get(layer))
            for layer, row in layers_in_order(report.layers)]


def layers_in_order(layers: Mapping[str, T]) -> list[tuple[str, T]]:
    """Layers keyed by their number, by depth (a report read back from the store has its keys sorted as strings)."""
    return sorted(layers.items(), key=lambda item: int(item[0]))


WHY_LAYER = {"criterion": "chosen by the layer criterion (the highest score; near-ties go to the middle layer)",
             "user": "given with --layer", "middle": "the middle layer (relative depth 0.5)"}


def layer_choice_text(choice: LayerChoice) -> str:
    """Why the report reads the layer it reads (the HTML page and the terminal report say the same)."""
    why = WHY_LAYER.get(choice.by, f"chosen by {choice.by or 'an older difflens'}")
    scores = {int(layer): score for layer, score in choice.scores.items()}
    best = max(scores, key=lambda layer: scores[layer], default=None)
    tail = f"; best score {scores[best]:.2f} at layer {best}" if best is not None else ""
    return f"report layer {choice.layer}: {why}; middle layer {choice.middle}{tail}."


@dataclass(frozen=True)
class ScaleCurve:
    """One Patchscope position: each selected token's probability at every positive scale (None where the token
    is not among that scale's listed top tokens), and the scale the chooser took."""

    pos: str
    scales: list[float]
    tokens: dict[str, list[float | None]]
    best_scale: float | None


def patchscope_curves(report: TriageReport, n_tokens: int = 5) -> list[ScaleCurve]:
    """Patchscope at the report layer across its positive scales (the side the chooser reports), per position."""
    row = report.layer_row()
    curves = []
    for p in [str(p) for p in report.read_positions()]:
        cell = row[p].patchscope
        if cell is None or not cell.selected:
            continue
        scales = sorted((s for s in cell.scales if s.scale > 0), key=lambda s: s.scale)
        if not scales:
            continue
        chosen = cell.selected[:n_tokens]
        probs = [dict(token_pairs(s.tokens)) for s in scales]
        curves.append(ScaleCurve(pos=p, scales=[s.scale for s in scales],
                                 tokens={t: [pr.get(t) for pr in probs] for t in chosen}, best_scale=cell.best_scale))
    return curves


# The reference's output names and the column each is shown under.
PAPER_SHARES = {"percentage": "relevant", "weighted_percentage": "weighted", "trivial_percentage": "trivial",
                "filtered_percentage": "filtered", "weighted_filtered_percentage": "weighted filtered"}


@dataclass(frozen=True)
class PaperRelevanceRow:
    """`--protocol paper`'s token relevance of one (target, source, variant), averaged over the graded positions,
    under the reference's names (`self` = the finetune's own description, else a baseline organism's)."""

    target: str
    source: str
    variant: str
    shares: dict[str, float | None]
    graded: int
    ungraded: int


def paper_relevance_rows(report: TriageReport) -> list[PaperRelevanceRow]:
    """The paper protocol's relevance table, the finetune's own rows first (none without a `paper` block; the
    report's JSON may come with its keys sorted)."""
    relevance = report.paper.relevance if report.paper is not None else None
    means_of = relevance.means if relevance is not None else {}
    return [PaperRelevanceRow(target=target, source=source, variant=variant, shares=_shares(means),
                              graded=means.n, ungraded=means.ungraded)
            for target, by_source in sorted(means_of.items(), key=lambda t: t[0] != "self")
            for source, by_variant in by_source.items() for variant, means in by_variant.items()]


def _shares(means: RelevanceMeans) -> dict[str, float | None]:
    """The shares under the reference's names, in `PAPER_SHARES` order."""
    by_name = {"percentage": means.percentage, "weighted_percentage": means.weighted_percentage,
               "trivial_percentage": means.trivial_percentage, "filtered_percentage": means.filtered_percentage,
               "weighted_filtered_percentage": means.weighted_filtered_percentage}
    return {name: by_name[name] for name in PAPER_SHARES}


def share_text(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.0f}%"
