"""Typed triage results: one pair's report (`triage.pair`), a board of them (`triage.board`, `triage.boards`) and a
trajectory (`trajectory.run`, `trajectory.list`), section by section as the engine writes them.

Written by engine/triage/pair_triage.py (the report), engine/results/significance.py (its verdict),
engine/triage/board.py and score.py (a board row), engine/triage/trajectory.py (a step). Every field has a default:
a report stored before a section existed (no significance, no lens heads, no steering) still reads, with None or
empty where the section is missing; a newer engine's extra keys pass through `to_json()`, which gives back exactly
what the engine sent. Renderers (tui/render/) read these attributes, never the JSON by key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.protocol.params import KEY
from engine.protocol.results import Keywords, LayerChoice, PatchscopeCell, Result, Significance, SteerSample, Token


@dataclass(frozen=True, kw_only=True)
class ReportCell(Result):
    """One layer × position of a report: ‖Δ‖ and ‖Δ‖/‖base‖, the diff's logit-lens `[token, prob]` pairs, its
    Patchscope (at the report layer's read positions only) and its token relevance (when a description was known:
    per readout the share, `ungraded` the reasons)."""

    norm: float = 0.0
    rel_norm: float = 0.0
    logit_lens: list[Any] = field(default_factory=list)
    patchscope: PatchscopeCell | None = None
    relevance: dict[str, Any] | None = None


@dataclass(frozen=True, kw_only=True)
class LensHeads(Result):
    """Which unembedding head read each source's logit lens (`ft` or `base`)."""

    diff: str = ""
    base: str = ""
    ft: str = ""


@dataclass(frozen=True, kw_only=True)
class SteeringCell(Result):
    """One position's steering: the calibrated strength, the calibration's `[strength, coherence]` per step tried,
    the calibration samples the judge left ungraded, and the steered/unsteered samples (`prompts` empty: no
    coherent strength was found)."""

    strength: float = 0.0
    coherence: list[list[float]] = field(default_factory=list)
    ungraded: int = 0
    prompts: list[SteerSample] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class SteeringSimilarity(Result):
    """Embedding similarity of steered and unsteered samples to the finetuning texts, and the gain between."""

    steered: float = 0.0
    unsteered: float = 0.0
    gain: float = 0.0


@dataclass(frozen=True, kw_only=True)
class RelevanceCell(Result):
    """The cell whose diff-lens tokens the judge found most relevant, with each source's relevance there."""

    layer: int | None = None
    pos: int | None = None
    diff: float | None = None
    base: float | None = None
    ft: float | None = None

    def summary(self, token: Token = str) -> str:
        sources = ", ".join(f"{name} {value:.2f}" for name, value in
                            (("diff", self.diff), ("base", self.base), ("ft", self.ft)) if value is not None)
        return f"layer {self.layer} pos {self.pos} ({sources})"


@dataclass(frozen=True, kw_only=True)
class RelevanceSummary(Result):
    """The diff lens's token relevance: the best layer and its mean, the best cell, each layer's mean (keys are
    layers as text) and how many cells went ungraded."""

    best_layer: int | None = None
    best_layer_mean_diff_relevance: float | None = None
    best_cell: RelevanceCell | None = None
    per_layer_mean: dict[str, float | None] = field(default_factory=dict)
    ungraded_cells: int = 0


@dataclass(frozen=True, kw_only=True)
class PaperScope(Result):
    """`--protocol paper`: one position's Patchscope of a variant (difference, base, ft) at its chosen scale."""

    pos: int | None = None
    best_scale: float | None = None
    selected: list[str] = field(default_factory=list)
    chosen_by: str = ""
    judge: str = ""
    tokens: list[Any] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class RelevanceMeans(Result):
    """The reference's relevance shares of one (target, source, variant), means over its `n` graded positions."""

    n: int = 0
    ungraded: int = 0
    percentage: float | None = None
    weighted_percentage: float | None = None
    trivial_percentage: float | None = None
    filtered_percentage: float | None = None
    weighted_filtered_percentage: float | None = None


@dataclass(frozen=True, kw_only=True)
class PaperRelevance(Result):
    """`--protocol paper`'s token relevance: per cell, and `summary[target][source][variant]` the means."""

    layer: int | None = None
    positions: list[int] = field(default_factory=list)
    judge: str = ""
    targets: list[dict[str, Any]] = field(default_factory=list)
    cells: list[dict[str, Any]] = field(default_factory=list)
    means: dict[str, dict[str, dict[str, RelevanceMeans]]] = field(default_factory=dict, metadata={KEY: "summary"})


@dataclass(frozen=True, kw_only=True)
class PaperBlock(Result):
    """What `--protocol paper` adds: Patchscope per variant and position, and relevance (None: nothing describes
    the finetune)."""

    patchscope: dict[str, list[PaperScope]] = field(default_factory=dict)
    relevance: PaperRelevance | None = None


@dataclass(frozen=True, kw_only=True)
class TriageReport(Result):
    """triage.pair: one pair's report. `layers[layer][pos]` every cell (keys as text); `steering[pos]` the
    calibrated samples (empty: no steering); `hypothesis` the keyword hypothesis; `headline` what the report leads
    with."""

    run: str | None = None
    protocol: str = "default"
    base: str = ""
    ft: str = ""
    corpus: str = ""
    n: int = 0
    k: int = 0
    n_layers: int = 0
    layer: int = 0
    layer_choice: LayerChoice | None = None
    significance: Significance | None = None
    positions: list[int] | None = None
    cached: bool = False
    description: str | None = None
    lens_heads: LensHeads = field(default_factory=LensHeads)
    layers: dict[str, dict[str, ReportCell]] = field(default_factory=dict)
    steering: dict[str, SteeringCell] = field(default_factory=dict)
    steering_similarity: SteeringSimilarity | None = None
    relevance_summary: RelevanceSummary | None = None
    hypothesis: Keywords | None = None
    headline: str = ""
    judges: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    paper: PaperBlock | None = None

    def read_positions(self) -> list[int]:
        """The positions the report read (every one of the first k in a report from before `positions`)."""
        return list(self.positions) if self.positions is not None else list(range(self.k))

    def layer_row(self, layer: int | None = None) -> dict[str, ReportCell]:
        """One layer's cells by position (the report layer's by default)."""
        return self.layers[str(self.layer if layer is None else layer)]


@dataclass(frozen=True, kw_only=True)
class PeakCell(Result):
    layer: int = 0
    pos: int = 0


@dataclass(frozen=True, kw_only=True)
class Trace(Result):
    """A board row's trace strength (engine/triage/score.py) and its verdict against the null."""

    score: float | None = None
    peak_rel_norm: float | None = None
    peak_cell: PeakCell | None = None
    concentration: float | None = None
    coherence: float | None = None
    tokens: list[str] = field(default_factory=list)
    significance: Significance | None = None


@dataclass(frozen=True, kw_only=True)
class BoardEntry(Result):
    """One pair of a board: its outcome (`error` when it failed), and its full report when asked for."""

    name: str = ""
    base: str = ""
    ft: str = ""
    adapter: str | None = None
    description: str | None = None
    corpus: str | None = None
    error: str | None = None
    score: float | None = None
    trace: Trace | None = None
    hypothesis: str | None = None
    hypothesis_source: str | None = None
    run: str | None = None
    skipped: bool = False
    seconds: float | None = None
    report: TriageReport | None = None

    def verdict(self) -> str:
        """The row's significance in a few words (kept in its trace)."""
        sig = self.trace.significance if self.trace is not None else None
        return (sig or Significance()).short()


@dataclass(frozen=True, kw_only=True)
class BoardPlan(Result):
    order: list[str] = field(default_factory=list)
    model_loads: int | None = None


@dataclass(frozen=True, kw_only=True)
class TriageBoardResult(Result):
    """triage.board: the pairs ranked, the plan (how many model loads), how many were finished before."""

    board: str | None = None
    name: str = ""
    source: str | None = None
    pairs: list[BoardEntry] = field(default_factory=list)
    plan: BoardPlan = field(default_factory=BoardPlan)
    skipped: int = 0
    score_definition: str = ""


@dataclass(frozen=True, kw_only=True)
class LatestBoard(Result):
    """triage.boards (`board` None: no board yet)"""

    board: TriageBoardResult | None = None


@dataclass(frozen=True, kw_only=True)
class TrajectoryStep(Result):
    """One step of a trajectory: its place `x` on the axis, its significance, layer, headline tokens and gain."""

    label: str = ""
    x: float = 0.0
    run: str = ""
    ft: str = ""
    readable: bool | None = None
    identical: bool = False
    z: float | None = None
    p: float | None = None
    threshold_z: float | None = None
    observed: float | None = None
    layer: int | None = None
    layer_by: str | None = None
    score: float | None = None
    tokens: list[str] = field(default_factory=list)
    rel_norm: float | None = None
    gain: float | None = None
    statement: str | None = None
    headline: str | None = None


@dataclass(frozen=True, kw_only=True)
class TrajectoryResult(Result):
    """trajectory.run: the series (`axis` what x is), the pair, the shared null's size, and its steps."""

    trajectory: str = ""
    series: str = ""
    axis: str = ""
    base: str = ""
    ft: str = ""
    corpus: str = ""
    n: int = 0
    k: int = 0
    null: int = 0
    steer: bool = False
    steps: list[TrajectoryStep] = field(default_factory=list)
    seconds: float = 0.0


@dataclass(frozen=True, kw_only=True)
class TrajectoryListing(Result):
    """One stored trajectory in `trajectory.list`."""

    trajectory: str
    series: str = ""
    base: str = ""
    ft: str = ""
    steps: int = 0
    created: float = 0.0


@dataclass(frozen=True, kw_only=True)
class Trajectories(Result):
    """trajectory.list: one row per stored trajectory, and the latest one whole (`latest` None: none yet)."""

    trajectories: list[TrajectoryListing] = field(default_factory=list)
    latest: TrajectoryResult | None = None
