"""Typed results: each method's answer is a frozen dataclass, parsed and checked by the same code as its params.

A result types the fields its readers (the workbench, the CLI, session comparison) read, and keeps the JSON object
the engine sent: `to_json()` gives it back unchanged, so the CLI prints and sessions record exactly the wire, and a
newer engine's extra fields pass through. Nested sections are typed too (a causal answer's text sets, a verdict
against the null); the triage report, board and trajectory are typed section by section in `report_results.py`.
Only payloads nobody reads field by field stay `dict[str, Any]` (a criterion's settings, a null's delta profile).
Readers in `tui/` read attributes, never `result["key"]` (tests/protocol/test_no_result_string_reads.py).
To add a result field: add it here (with its default) where its reader needs it; the engine's op writes the key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Self

from engine.protocol.params import KEY, JsonRecord

Token = Callable[[str], str]
"""How a summary shows a token (the CLI and the TUI make whitespace visible; plain `str` by default)."""

TOP = 8  # tokens a one-line summary shows


def one_line(text: object, limit: int = 160) -> str:
    """`text` on one line, cut at `limit` characters with an ellipsis."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def token_pairs(raw: Any) -> tuple[tuple[str, float], ...]:
    """`[[token, prob], ...]` (or `[id, token, prob]` triples) as `(token, prob)` pairs."""
    out = []
    for item in raw or ():
        token, prob = (item[1], item[2]) if len(item) == 3 else (item[0], item[1])
        out.append((str(token), float(prob)))
    return tuple(out)


def tokens_line(raw: Any, token: Token = str, top: int = TOP) -> str:
    """The first `top` tokens of a readout with their probabilities, on one line."""
    return "  ".join(f"{token(t)} {p:.2f}" for t, p in token_pairs(raw)[:top])


@dataclass(frozen=True, kw_only=True)
class Result(JsonRecord):
    """Base of every method's result: the typed fields, and the JSON object they were read from."""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        record = super().from_json(data)
        object.__setattr__(record, "_wire", dict(data))
        return record

    def to_json(self) -> dict[str, Any]:
        """The result as the engine sent it (built from the fields when it was made here)."""
        wire: dict[str, Any] | None = self.__dict__.get("_wire")
        return dict(wire) if wire is not None else super().to_json()

    def summary(self, token: Token = str) -> str:
        """The answer in a few lines, the gist a pane would show (session comparison puts old beside new)."""
        return one_line(self.to_json())


# ---- shared pieces ----

@dataclass(frozen=True, kw_only=True)
class Ack(Result):
    """A result nobody reads field by field (a built-in's status, a written file's description)."""


@dataclass(frozen=True, kw_only=True)
class Pair(Result):
    """The models and corpus a run compares."""

    run: str = ""
    base: str = ""
    ft: str = ""
    corpus: str = ""
    n: int = 0
    k: int = 0


@dataclass(frozen=True, kw_only=True)
class ScaleTokens(Result):
    scale: float
    tokens: list[Any] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class SteerSample(Result):
    prompt: str = ""
    steered: str = ""
    unsteered: str = ""
    strength: float | None = None


@dataclass(frozen=True, kw_only=True)
class Judged(Result):
    """Who judged a calibration, and how many of its samples it left ungraded."""

    judge: str = ""
    ungraded: int = 0


# ---- one result class per method ----

@dataclass(frozen=True, kw_only=True)
class LoadedModel(Result):
    spec: str = ""
    bytes: int = 0


@dataclass(frozen=True, kw_only=True)
class EngineStatus(Result):
    """engine.status (the part the pair bar shows)"""

    device: str = ""
    models: list[LoadedModel] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class AdlComputed(Pair):
    """adl.compute (`shape`: the mean diff's [layer, pos, d_model]; `file`: where it is stored)"""

    cached: bool = False
    n_layers: int | None = None
    d_model: int | None = None
    shape: list[int] = field(default_factory=list)
    seconds: float = 0.0
    memory_plan: str | None = None
    file: str = ""

    def summary(self, token: Token = str) -> str:
        return f"{self.base} → {self.ft}\nrun {self.run}  n={self.n} k={self.k}"


@dataclass(frozen=True, kw_only=True)
class RunListing(Pair):
    """One stored run in `adl.runs` (`created`: a timestamp, or the text a recording has)."""

    created: float | str | None = None
    seconds: float | None = None


@dataclass(frozen=True, kw_only=True)
class AdlRuns(Result):
    """adl.runs"""

    runs: list[RunListing] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class LayerChoice(Result):
    """The report layer, how it was chosen (`by` criterion | user | middle), the middle layer, and every layer's
    criterion score (`scores`, keys are layers as text) with its parts."""

    layer: int | None = None
    by: str = ""
    middle: int | None = None
    scores: dict[str, float] = field(default_factory=dict)
    parts: dict[str, dict[str, float]] = field(default_factory=dict)
    criterion: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class NullTest(Result):
    """One number against its null of random adapters (engine/results/significance.py `against`): the mean, sd
    and max of the null, z, the empirical p, N; `tested` False with only a `statement` when it could not run."""

    tested: bool = True
    statement: str = ""
    observed: float | None = None
    null_mean: float | None = None
    null_sd: float | None = None
    null_max: float | None = None
    z: float | None = None
    p: float | None = None
    n_null: int | None = None
    clears: bool | None = None


@dataclass(frozen=True, kw_only=True)
class Significance(NullTest):
    """A report's verdict against its null: `readable` True | False, or None when untested (--null 0, or a report
    from before significance); `identical` for a pair whose diff is zero (no null is run); the one `statement`
    every view shows. The relevance and steering-gain tests ride along when they ran. A board row keeps the
    numbers without the null's per-layer scores."""

    tested: bool = False
    readable: bool | None = None
    identical: bool = False
    verdict: str = ""
    statistic: str = ""
    threshold_z: float | None = None
    null_layer_scores: dict[str, list[float]] = field(default_factory=dict)
    null_profile: dict[str, Any] = field(default_factory=dict)
    null_runs: list[str] = field(default_factory=list)
    null_seconds: float | None = None
    relevance: NullTest | None = None
    steering_gain: NullTest | None = None

    def short(self) -> str:
        """In a few words: `z 12.3` for a readable trace, else `no readable trace (z 0.6)`, or `untested`."""
        if self.readable is None:
            return "untested"
        if self.z is None:
            return self.verdict
        return f"z {self.z:.1f}" if self.readable else f"{self.verdict} (z {self.z:.1f})"


@dataclass(frozen=True, kw_only=True)
class Calibrated(Result):
    """The stored calibration at the report layer: strength per position (keys are positions as text)."""

    layer: int
    strengths: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class AdlSummary(AdlComputed):
    """adl.summary"""

    layers: list[int] | None = None
    middle_layer: int | None = None
    layer_choice: LayerChoice | None = None
    significance: Significance | None = None
    metrics: dict[str, list[Any]] = field(default_factory=dict)
    calibrated: Calibrated | None = None


@dataclass(frozen=True, kw_only=True)
class SteerCalibrated(Judged):
    """steer.calibrate"""

    strength: float
    layer: int | None = None
    pos: int | None = None

    def summary(self, token: Token = str) -> str:
        return f"α = {self.strength}"


@dataclass(frozen=True, kw_only=True)
class ComponentRef(Result):
    """The principal component a steering run steered along: its PCA result's key and its index."""

    pca: str = ""
    index: int = 0


@dataclass(frozen=True, kw_only=True)
class Steered(Result):
    """steer.generate (`calibration`: set when it calibrated the strength; `component`: when it steered along a
    principal component)"""

    layer: int | None = None
    pos: int | None = None
    strengths: list[float] = field(default_factory=list)
    samples: list[SteerSample] = field(default_factory=list)
    calibration: Judged | None = None
    component: ComponentRef | None = None

    def summary(self, token: Token = str) -> str:
        return "\n".join(f"[{i}] {one_line(s.steered)}" for i, s in enumerate(self.samples[:3]))


@dataclass(frozen=True, kw_only=True)
class LensCell(Result):
    """readout.logit_lens"""

    layer: int | None = None
    pos: int | None = None
    source: str = "diff"
    head: str = ""
    tokens: list[Any] = field(default_factory=list)

    def summary(self, token: Token = str) -> str:
        return tokens_line(self.tokens, token)


@dataclass(frozen=True, kw_only=True)
class LensGridResult(Result):
    """readout.lens_grid: `layers[layer][pos]` the cell's tokens (keys as text)."""

    run: str = ""
    source: str = "diff"
    head: str = ""
    layers: dict[str, dict[str, list[Any]]] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class PatchscopeCell(Result):
    """readout.patchscope"""

    layer: int | None = None
    pos: int | None = None
    best_scale: float | None = None
    best_by_sign: dict[str, float] = field(default_factory=dict)
    selected: list[str] = field(default_factory=list)
    chosen_by: str = ""
    judge: str = ""
    scales: list[ScaleTokens] = field(default_factory=list)

    def summary(self, token: Token = str) -> str:
        best = self.best_scale
        at = min(self.scales, key=lambda s: abs(s.scale - float(best or 0))) if self.scales else None
        return f"best scale {best}: " + (tokens_line(at.tokens, token) if at else "")


@dataclass(frozen=True, kw_only=True)
class NdifDeployment(Result):
    repo_id: str
    revision: str = ""
    state: str = ""
    level: str = ""


@dataclass(frozen=True, kw_only=True)
class NdifModels(Result):
    """ndif.models"""

    host: str = ""
    models: list[NdifDeployment] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class DataWritten(Result):
    """organism.make_data: how many documents went where"""

    out: str = ""
    n: int | None = None


@dataclass(frozen=True, kw_only=True)
class OrganismTrained(Result):
    """organism.train"""

    out: str = ""
    final_loss: float | None = None


@dataclass(frozen=True, kw_only=True)
class Organism(Result):
    """One organism of `organism.list` (its other fields are shown as they come by `organism show`)."""

    name: str
    type: str | None = None
    base: str | None = None
    bases: list[str] = field(default_factory=list)
    short: str | None = None
    source: str | None = None

    def bases_text(self) -> str:
        return self.base or ", ".join(self.bases)


@dataclass(frozen=True, kw_only=True)
class Organisms(Result):
    """organism.list"""

    organisms: list[Organism] = field(default_factory=list)
    recipes: list[str] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class LensAnswer(Result):
    """A `lens.*` answer: its stored result's key, whether it came from the cache, and the lens's payload."""

    result: str = ""
    cached: bool = False


@dataclass(frozen=True, kw_only=True)
class KlPeak(Result):
    """A text's most divergent spot: the token the prediction follows, its KL, each model's top predictions."""

    token: str = ""
    kl: float = 0.0
    base_top: list[Any] = field(default_factory=list)
    ft_top: list[Any] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class KlText(Result):
    """One text (or snippet): `[token, kl, diff_norm]` per token, and its peak."""

    tokens: list[list[Any]] = field(default_factory=list)
    max: KlPeak | None = None


@dataclass(frozen=True, kw_only=True)
class KlStats(Result):
    n_texts: int = 0
    n_tokens: int = 0
    mean_kl: float = 0.0
    max_kl: float = 0.0
    mean_diff_norm: float = 0.0


@dataclass(frozen=True, kw_only=True)
class KlAnswer(LensAnswer):
    """lens.kl: every text painted, and the top snippets around each text's peak"""

    layer: int | None = None
    texts: list[KlText] = field(default_factory=list)
    top: list[KlText] = field(default_factory=list)
    stats: KlStats = field(default_factory=KlStats)

    def summary(self, token: Token = str) -> str:
        top = (self.top[0].max if self.top else None) or KlPeak()
        return (f"mean KL {self.stats.mean_kl:.3f}, max {self.stats.max_kl:.2f} after {top.token!r} "
                f"(finetuned → {', '.join(repr(t[0]) for t in top.ft_top[:3])})")


@dataclass(frozen=True, kw_only=True)
class AmplifiedRow(Result):
    """One prompt: base, finetune, and the text at each factor (keyed `f"{factor:g}"`)."""

    prompt: str = ""
    base: str = ""
    ft: str = ""
    amplified: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class AmplifyAnswer(LensAnswer):
    """lens.amplify (`method` lora: the adapter's delta scaled, else the weight difference; `scope`: where)"""

    factors: list[float] = field(default_factory=list)
    method: str = "lora"
    scope: str = ""
    rows: list[AmplifiedRow] = field(default_factory=list)

    def summary(self, token: Token = str) -> str:
        return "\n".join(f"×{f}: {one_line(text)}" for row in self.rows[:2] for f, text in row.amplified.items())


@dataclass(frozen=True, kw_only=True)
class MinedExample(Result):
    context: str = ""


@dataclass(frozen=True, kw_only=True)
class MinedToken(Result):
    """A token often in the top-K of ft − base: how often, its share of positions, the mean Δ log p, contexts."""

    token: str
    count: int = 0
    share: float = 0.0
    mean_diff: float = 0.0
    trivial: bool = False
    examples: list[MinedExample] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class Topic(Result):
    share: float = 0.0
    tokens: list[str] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class MineAnswer(LensAnswer):
    """lens.mine"""

    top_k: int | None = None
    n_texts: int = 0
    n_positions: int = 0
    tokens: list[MinedToken] = field(default_factory=list)
    topics: list[Topic] = field(default_factory=list)

    def summary(self, token: Token = str) -> str:
        return "  ".join(f"{token(t.token)} {t.count}" for t in self.tokens if not t.trivial)[:300]


@dataclass(frozen=True, kw_only=True)
class PatchLosses(Result):
    """Mean loss of base, finetuned and patched finetuned over one scope of a text set, the patch's change and the
    share of the finetune's gain it undoes (all None when no token is in the scope)."""

    base: float | None = None
    ft: float | None = None
    patched: float | None = None
    delta: float | None = None
    share_of_gain_removed: float | None = None


@dataclass(frozen=True, kw_only=True)
class ControlSpread(Result):
    """How one kind of control moved the loss: mean ± std, and the largest change."""

    mean: float = 0.0
    std: float = 0.0
    max_abs: float = 0.0


@dataclass(frozen=True, kw_only=True)
class ControlTest(Result):
    """The effect against one kind of control (`p` None: too few controls); `outside` whether it leaves them."""

    z: float | None = None
    p: float | None = None
    n_controls: int = 0
    outside: bool | None = None
    stable: float | None = None
    z_se: float | None = None


@dataclass(frozen=True, kw_only=True)
class DirectionVerdict(Result):
    decided: bool = False
    outside: bool | None = None
    line: str = ""


@dataclass(frozen=True, kw_only=True)
class CausalSet(Result):
    """One text set of a causal answer. Patch modes (base, diff): `after_k` and `overall` (the JSON's `all`) losses.
    The direction mode: base, finetuned and intervened loss, the effect, each control kind's spread and test, the
    verdict, and the same per scope (`scopes`)."""

    n_texts: int = 0
    after_k: PatchLosses = field(default_factory=PatchLosses)
    overall: PatchLosses = field(default_factory=PatchLosses, metadata={KEY: "all"})
    n_tokens: int = 0
    base: float | None = None
    ft: float | None = None
    intervened: float | None = None
    effect: float | None = None
    share_of_gain_removed: float | None = None
    controls: dict[str, list[float]] = field(default_factory=dict)
    spread: dict[str, ControlSpread] = field(default_factory=dict)
    tests: dict[str, ControlTest] = field(default_factory=dict)
    verdict: DirectionVerdict = field(default_factory=DirectionVerdict)
    scopes: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class CausalAnswer(LensAnswer):
    """lens.causal: per text set (`sets`, one table each) the losses; `mode` base or diff (what patched the first
    `k` positions) or direction (the direction test at `pos`, `ablation` base or zero, against `n_controls`)"""

    mode: str = "patch"
    layer: int | None = None
    k: int | None = None
    pos: int | None = None
    ablation: str = ""
    n_controls: int | None = None
    patch_direction: str = "base_to_ft"
    sets: dict[str, CausalSet] = field(default_factory=dict)

    def summary(self, token: Token = str) -> str:
        if self.mode == "direction":
            return "\n".join(f"{name}: ft {s.ft} effect {s.effect:+} ({s.verdict.line})"
                             for name, s in self.sets.items())
        return "\n".join(f"{name}: base {s.overall.base} ft {s.overall.ft} patched {s.overall.patched}"
                         for name, s in self.sets.items())


@dataclass(frozen=True, kw_only=True)
class PcaComponent(Result):
    """One principal component: its share of the variance, its cosine with the mean diff, its largest dimension
    (`[dim, share]`) and its logit-lens tokens both ways."""

    index: int
    explained_variance_ratio: float = 0.0
    cos_with_mean: float = 0.0
    top_dim: list[Any] = field(default_factory=list)
    tokens: list[Any] = field(default_factory=list)
    negative_tokens: list[Any] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class PcaAnswer(LensAnswer):
    """lens.pca (the layer and position it read; the mean diff's norm, share of E‖d‖² and tokens beside)"""

    layer: int = 0
    pos: int = 0
    n_texts: int = 0
    components: list[PcaComponent] = field(default_factory=list)
    mean_norm: float = 0.0
    mean_share: float = 0.0
    mean_tokens: list[Any] = field(default_factory=list)
    mean_diff_norm: float = 0.0


@dataclass(frozen=True, kw_only=True)
class Hypothesis(Result):
    hypothesis: str = ""
    confidence: float | None = None
    evidence: list[str] = field(default_factory=list)
    id: int | str | None = None
    status: str = ""


@dataclass(frozen=True, kw_only=True)
class AgentUsage(Result):
    """What an agent spent."""

    llm_calls: int = 0
    model_interactions: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    llm_s: float = 0.0
    tool_s: float = 0.0


@dataclass(frozen=True, kw_only=True)
class AgentAnswer(Result):
    """What an agent concluded (`tested`: it ran a tool that tests something)."""

    description: str = ""
    hypotheses: list[Hypothesis] = field(default_factory=list)
    usage: AgentUsage = field(default_factory=AgentUsage)
    tested: bool = False


@dataclass(frozen=True, kw_only=True)
class Grade(Result):
    """A grader's verdict: the median `score` of its `scores` (None: ungraded) and why."""

    score: int | float | None = None  # as the grader gave it (4, not 4.0)
    scores: list[int | float | None] = field(default_factory=list)
    rationale: str = ""

    def text(self) -> str:
        """`4/5 — why` (`?/5` when the grader gave no score)."""
        score = "?" if self.score is None else self.score
        return f"{score}/5" + (f" — {self.rationale}" if self.rationale else "")


@dataclass(frozen=True, kw_only=True)
class AgentRunSummary(Result):
    """One agent run of `agent.run` (`mode` adl | baseline); `grade` when graded."""

    id: str = ""
    mode: str = "adl"
    status: str = ""
    result: AgentAnswer | None = None
    grade: Grade | None = None


@dataclass(frozen=True, kw_only=True)
class ComparedSide(Result):
    """One side of an agent comparison: its grades' median (`grade`), mean ± sd, budget and tools."""

    grade: int | float | None = None
    n: int = 0
    mean: float | None = None
    sd: float | None = None
    budget: dict[str, Any] = field(default_factory=dict)
    tools: list[str] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class AgentRunResult(Result):
    """agent.run (`adl` and `baseline` set when it compared the two)"""

    runs: list[AgentRunSummary] = field(default_factory=list)
    protocol: str = ""
    compare_path: str | None = None
    adl: ComparedSide | None = None
    baseline: ComparedSide | None = None

    def summary(self, token: Token = str) -> str:
        run = self.runs[0] if self.runs else AgentRunSummary()
        answer = run.result.description if run.result is not None else ""
        grade = run.grade
        return one_line(answer, 300) + (f"\ngrade {grade.score}" if grade else "")


@dataclass(frozen=True, kw_only=True)
class Keywords(Result):
    """agent.keywords"""

    label: str = ""
    text: str = field(default="", metadata={KEY: "summary"})  # the one-line hypothesis
