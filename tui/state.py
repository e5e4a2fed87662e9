"""What the workbench panes show, as plain frozen data: any source (engine, recording, replay) can fill it.

The panes never talk to the engine; the workbench screen turns engine answers into these values with the
pure functions below, so a replay of recorded results paints exactly the same panes. What steering remembers
beyond its pane (α per cell, samples shown before, the newest run) is frozen here too (`SteerMemory`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, get_args

from engine.protocol.methods import Source
from engine.protocol.params import ParamsError
from engine.protocol.results import (
    AdlSummary,
    AgentAnswer,
    AgentRunResult,
    AgentRunSummary,
    Grade,
    Keywords,
    LayerChoice,
    PatchscopeCell,
    Significance,
    Steered,
    token_pairs,
)
from engine.protocol.results import (
    Hypothesis as AnsweredHypothesis,
)

METRIC_LABELS = {"rel_norm": "diff / base norm", "diff_norm": "diff norm", "relevance": "token relevance"}
HEATMAP_METRICS = tuple(METRIC_LABELS)
# ‖Δ‖/‖base‖ by default: the raw diff norm grows with depth (one late layer sets the scale and paints the early
# ones a single colour); relative to the base activation every layer reads on the same scale.
DEFAULT_METRIC = "rel_norm"
RELEVANCE_MISSING = ("token relevance grades readouts against a known finetune's description "
                     "(a triage of a known organism); this run has none")
LENS_SOURCES: tuple[Source, ...] = get_args(Source)  # the order `s` cycles through
LLM_HELP = ("set DIFFLENS_LLM_BASE_URL, DIFFLENS_LLM_MODEL and OPENAI_API_KEY where the engine runs, "
            "or start the engine with --llm local:SPEC")


@dataclass(frozen=True)
class EngineView:
    """The engine connection as the pair bar shows it."""

    description: str = "connecting…"
    connected: bool = False
    lost: bool = False
    device: str = ""
    model_bytes: int = 0
    job: JobView | None = None


@dataclass(frozen=True)
class JobView:
    """The newest running job: what it is and how far along."""

    label: str
    done: int = 0
    total: int | None = None
    message: str = ""
    eta_s: float | None = None
    running: int = 1


@dataclass(frozen=True)
class PairInfo:
    """The open run: which pair, on what corpus, with which settings."""

    run: str
    base: str
    ft: str
    corpus: str
    n: int
    k: int


@dataclass(frozen=True)
class HeatState:
    """The layer × position grid: every metric, the shown one, the cursor and the colour-scale rule."""

    layers: tuple[int, ...] = ()
    k: int = 0
    metrics: dict[str, tuple[tuple[float, ...], ...]] = field(default_factory=dict)
    metric: str = DEFAULT_METRIC
    row: int = 0
    pos: int = 0
    include_pos0: bool = False
    status: str = "no run open"
    layer_scores: tuple[float | None, ...] = ()  # the layer criterion per row (engine/results/layer_choice.py)
    chosen_layer: int | None = None
    significance: Significance | None = None  # the run's verdict against its null, once a triage tested it

    @property
    def layer(self) -> int:
        return self.layers[self.row] if self.layers else 0

    @property
    def grid(self) -> tuple[tuple[float, ...], ...]:
        return self.metrics.get(self.metric, ())


@dataclass(frozen=True)
class TokensState:
    """Logit lens and Patchscope of the selected cell."""

    layer: int = 0
    pos: int = 0
    source: Source = "diff"
    head: str = ""                       # whose final norm + unembedding read the lens (base | ft)
    lens: tuple[tuple[str, float], ...] = ()
    lens_status: str = "move the heatmap cursor to read a cell"
    scales: tuple[tuple[float, tuple[tuple[str, float], ...]], ...] = ()
    best_scale: float | None = None
    scale_index: int | None = None
    selected: tuple[str, ...] = ()
    patch_status: str = "p runs Patchscope here"
    patch_judge: str = ""                # who chose the scale, or "ungraded: why" (then no scale is starred)

    @property
    def shown_scale(self) -> int | None:
        """Index of the Patchscope scale on screen: the user's pick, else the best one."""
        if not self.scales:
            return None
        if self.scale_index is not None:
            return max(0, min(self.scale_index, len(self.scales) - 1))
        values = [s for s, _ in self.scales]
        best = self.best_scale
        if best is None:
            return 0
        return min(range(len(values)), key=lambda i: abs(values[i] - best))


@dataclass(frozen=True)
class SteerRow:
    """One prompt: what the finetuned model writes with and without the steering vector."""

    prompt: str
    steered: str = ""
    unsteered: str = ""


@dataclass(frozen=True)
class SteerState:
    """Steering settings and the latest samples."""

    prompts: tuple[str, ...] = ()
    selected: int = 0
    alpha: float = 0.0
    alpha_from: str = "norm"             # norm (the cell's ‖Δ‖/‖base‖ until calibrated) | calibrated | you
    calibrated: float | None = None
    layer: int | None = None
    pos: int | None = None
    rows: tuple[SteerRow, ...] = ()
    status: str = "press r to steer from the selected cell"
    streaming: bool = False


@dataclass(frozen=True)
class Hypothesis:
    """One agent hypothesis with how sure it is (a confidence, or the board's status) and what it rests on."""

    text: str
    confidence: float | None = None
    evidence: tuple[str, ...] = ()
    id: int | None = None    # the hypothesis board's id: a later event with the same id updates it in place
    status: str = ""         # active, confirmed or rejected (hypothesis_tracking)


@dataclass(frozen=True)
class AgentState:
    """The agent's run: hypotheses, tool calls as they happen, final answer and grade."""

    status: str = "idle"
    note: str = "g runs the agent (it needs an LLM)"
    hypotheses: tuple[Hypothesis, ...] = ()
    log: tuple[str, ...] = ()
    final: str = ""
    grade: str = ""
    keywords: str = ""                   # the offline keyword hypothesis, shown when the agent cannot run


@dataclass
class WorkbenchModel:
    """Everything the workbench shows; replaced piecewise (the parts are frozen) so panes repaint on change."""

    pair: PairInfo | None = None
    heat: HeatState = field(default_factory=HeatState)
    tokens: TokensState = field(default_factory=TokensState)
    steer: SteerState = field(default_factory=SteerState)
    agent: AgentState = field(default_factory=AgentState)


def _grid(rows: Any) -> tuple[tuple[float, ...], ...]:
    return tuple(tuple(float(v) for v in row) for row in rows)


def apply_summary(model: WorkbenchModel, summary: AdlSummary) -> None:
    """Fill pair and heatmap from an `adl.summary` answer; the cursor starts at the peak of the chosen report
    layer (the middle layer for a summary without a layer choice)."""
    model.pair = PairInfo(run=summary.run, base=summary.base, ft=summary.ft, corpus=summary.corpus, n=summary.n,
                          k=summary.k)
    raw = summary.metrics
    metrics = {name: _grid(raw[name]) for name in HEATMAP_METRICS if raw.get(name)}
    n_layers = summary.n_layers or len(next(iter(metrics.values()), ()))
    layers = tuple(summary.layers or range(n_layers))
    choice = summary.layer_choice or LayerChoice()
    start = choice.layer if choice.layer is not None else summary.middle_layer
    row = layers.index(start) if start in layers else len(layers) // 2
    scores = choice.scores
    layer_scores = tuple(float(scores[str(lay)]) if str(lay) in scores else None for lay in layers) if scores else ()
    k = summary.k
    first = metrics.get("diff_norm") or next(iter(metrics.values()), ())
    pos = 0
    if first and k > 1:
        pos = max(range(1, k), key=lambda p: first[row][p])
    model.heat = HeatState(layers=layers, k=k, metrics=metrics, metric=DEFAULT_METRIC if DEFAULT_METRIC in metrics
                           else next(iter(metrics), DEFAULT_METRIC), row=row, pos=pos,
                           include_pos0=model.heat.include_pos0, status="", layer_scores=layer_scores,
                           chosen_layer=choice.layer,
                           significance=summary.significance)
    model.tokens = TokensState(layer=model.heat.layer, pos=pos, source=model.tokens.source)
    model.steer = replace(follow_cell(model.steer, model.heat, None), rows=(),
                          status="press r to steer from the selected cell")


def calibrated_cells(summary: AdlSummary) -> dict[tuple[int, int], float]:
    """The calibrated strength per (layer, pos) that an `adl.summary` brings (a triaged run's), else none."""
    calibrated = summary.calibrated
    if calibrated is None:
        return {}
    return {(calibrated.layer, int(pos)): strength for pos, strength in calibrated.strengths.items()}


def move_cursor(heat: HeatState, d_row: int, d_pos: int) -> HeatState:
    """The cursor moved by arrow keys, clamped to the grid."""
    if not heat.layers:
        return heat
    row = max(0, min(len(heat.layers) - 1, heat.row + d_row))
    pos = max(0, min(heat.k - 1, heat.pos + d_pos))
    return replace(heat, row=row, pos=pos)


def next_metric(heat: HeatState) -> HeatState:
    """Cycle through the metrics this run has."""
    names = [m for m in HEATMAP_METRICS if m in heat.metrics]
    if not names:
        return heat
    i = names.index(heat.metric) if heat.metric in names else -1
    return replace(heat, metric=names[(i + 1) % len(names)])


def apply_patchscope(tokens: TokensState, result: PatchscopeCell) -> TokensState:
    """A `readout.patchscope` answer for the shown cell; an ungraded cell stars no scale and says why."""
    scales = tuple((s.scale, token_pairs(s.tokens)) for s in result.scales)
    chosen = result.chosen_by
    ungraded = chosen.startswith("ungraded")
    return replace(tokens, scales=scales, best_scale=None if ungraded else result.best_scale, scale_index=None,
                   selected=tuple(result.selected), patch_judge=chosen if ungraded else result.judge,
                   patch_status="" if scales else "Patchscope found nothing at this cell")


# α steps multiplicatively: a coherent strength spans orders of magnitude across pairs and layers (the demo's
# calibrated α is 0.125), so a fixed step is either too coarse there or too fine elsewhere.
ALPHA_STEP = math.sqrt(2)


def round_alpha(alpha: float) -> float:
    """α to 4 significant digits, so stepping up then down lands on the same value (and the same memo key)."""
    return float(f"{alpha:.4g}")


def step_alpha(steer: SteerState, direction: int) -> SteerState:
    """α times or divided by √2, chosen by the user from then on."""
    return replace(steer, alpha=round_alpha(steer.alpha * ALPHA_STEP ** direction), alpha_from="you")


def norm_alpha(heat: HeatState) -> float:
    """A safe α before calibration answers: the cell's ‖Δ‖/‖base‖ (the steering vector is scaled to the layer's
    activation norm, so α = that ratio adds the finetune's own shift), on the √2 scale. Without the ratio, 1/8
    (the demo's calibrated strength)."""
    ratio = heat.metrics.get("rel_norm")
    if ratio and heat.pos < len(ratio[heat.row]) and ratio[heat.row][heat.pos] > 0:
        return round_alpha(ALPHA_STEP ** round(math.log(ratio[heat.row][heat.pos], ALPHA_STEP)))
    return 0.125


SteerKey = tuple[int | None, int | None, float, tuple[str, ...]]
Cell = tuple[int, int]


def steer_key(steer: SteerState) -> SteerKey:
    """What a steering result depends on here: cell, α and prompts (empty: the engine's defaults)."""
    return steer.layer, steer.pos, round_alpha(steer.alpha), steer.prompts


def follow_cell(steer: SteerState, heat: HeatState, calibrated: float | None, chosen: float | None = None
                ) -> SteerState:
    """Steering follows the cursor's cell: α is the one the user picked there, else its calibrated strength,
    else the norm default."""
    if chosen is not None:
        alpha, source = chosen, "you"
    elif calibrated is not None:
        alpha, source = calibrated, "calibrated"
    else:
        alpha, source = norm_alpha(heat), "norm"
    return replace(steer, layer=heat.layer, pos=heat.pos, calibrated=calibrated, alpha=alpha, alpha_from=source)


def start_steering(steer: SteerState, layer: int, pos: int) -> SteerState:
    """Rows emptied (prompts kept) while a new steering run streams in."""
    rows = tuple(SteerRow(prompt=p) for p in steer.prompts)
    return replace(steer, layer=layer, pos=pos, rows=rows, streaming=True,
                   status=f"steering L{layer} p{pos} at α {steer.alpha:.4g}…")


def apply_steer_partial(steer: SteerState, event: dict[str, Any]) -> SteerState:
    """A streamed piece of one sample: `text` is the whole text so far of `column` ("steered" | "unsteered") on
    line `line` (a sample's steered and unsteered texts share it, so both columns stream side by side; recordings
    from before `line` have only `row`)."""
    i = int(event.get("line", event.get("row", 0)))
    rows = list(steer.rows)
    while len(rows) <= i:
        rows.append(SteerRow(prompt=""))
    row = rows[i]
    prompt = str(event.get("prompt") or row.prompt)
    rows[i] = replace(row, prompt=prompt, **{event["column"]: str(event.get("text", ""))})
    return replace(steer, rows=tuple(rows))


def apply_steer_result(steer: SteerState, result: Steered) -> SteerState:
    """The finished `steer.generate`: its samples replace the streamed rows; their prompts become the list."""
    rows = tuple(SteerRow(prompt=s.prompt, steered=s.steered, unsteered=s.unsteered) for s in result.samples)
    prompts = tuple(dict.fromkeys(r.prompt for r in rows)) or steer.prompts
    selected = min(steer.selected, max(0, len(prompts) - 1))
    return replace(steer, rows=rows, prompts=prompts, selected=selected, streaming=False,
                   status=f"{len(rows)} samples (+/- α ×÷√2, e edit, r re-run)")


def set_alpha(steer: SteerState, alpha: float) -> SteerState:
    """α as the user typed it (rounded like every α, so it finds the samples shown before at that α)."""
    return replace(steer, alpha=round_alpha(alpha), alpha_from="you")


def use_calibrated(steer: SteerState) -> SteerState:
    """α back to the cell's calibrated strength (unchanged before the cell is calibrated)."""
    if steer.calibrated is None:
        return steer
    return replace(steer, alpha=steer.calibrated, alpha_from="calibrated")


def set_prompt(steer: SteerState, index: int, text: str) -> SteerState:
    """Prompt `index` rewritten."""
    prompts = list(steer.prompts)
    prompts[index] = text
    return replace(steer, prompts=tuple(prompts))


def add_prompt(steer: SteerState, text: str) -> SteerState:
    """A prompt added at the end, and selected."""
    prompts = (*steer.prompts, text)
    return replace(steer, prompts=prompts, selected=len(prompts) - 1)


def drop_prompt(steer: SteerState) -> SteerState:
    """The selected prompt removed, with its samples; the selection stays in the list."""
    if not steer.prompts:
        return steer
    prompts = steer.prompts[: steer.selected] + steer.prompts[steer.selected + 1:]
    rows = tuple(r for r in steer.rows if r.prompt in prompts)
    return replace(steer, prompts=prompts, rows=rows, selected=max(0, min(steer.selected, len(prompts) - 1)))


def select_prompt(steer: SteerState, delta: int) -> SteerState:
    """The selection moved by `delta` over the samples on screen (the prompts before any), clamped."""
    count = len(steer.rows or steer.prompts)
    if not count:
        return steer
    return replace(steer, selected=max(0, min(count - 1, steer.selected + delta)))


@dataclass(frozen=True)
class SteerMemory:
    """What steering remembers beyond what its pane shows: the strengths per cell (calibrated, or picked by the
    user), the samples already shown (painted again at once, with no job), the cell being calibrated, and the
    newest steering run (`tag`: a replaced run's late events are dropped; `asked`: what it was asked for)."""

    tag: int = 0
    asked: SteerKey | None = None
    shown: Mapping[SteerKey, Steered] = field(default_factory=dict)
    calibrated: Mapping[Cell, float] = field(default_factory=dict)
    chosen: Mapping[Cell, float] = field(default_factory=dict)
    calibrating: Cell | None = None


def with_calibrated(memory: SteerMemory, cells: Mapping[Cell, float]) -> SteerMemory:
    """Calibrated strengths learned (a triaged run's, a recorded calibration's)."""
    return replace(memory, calibrated={**memory.calibrated, **cells})


def with_choice(memory: SteerMemory, cell: Cell, alpha: float | None) -> SteerMemory:
    """The α the user picked at `cell` (None: forgotten, so the cell's calibrated or norm α applies again)."""
    chosen = {c: a for c, a in memory.chosen.items() if c != cell}
    return replace(memory, chosen=chosen if alpha is None else {**chosen, cell: alpha})


def remember_shown(memory: SteerMemory, asked: SteerKey, result: Steered) -> SteerMemory:
    """A steering result kept under what it was asked for and under its own prompts (which the list takes on),
    so going back to that cell and α paints it with no new job."""
    prompts = tuple(dict.fromkeys(s.prompt for s in result.samples))
    return replace(memory, shown={**memory.shown, asked: result, (*asked[:3], prompts): result})


def follow(memory: SteerMemory, steer: SteerState, heat: HeatState) -> tuple[SteerMemory, SteerState]:
    """Steering moves to the cursor's cell: the α the user picked on the cell it leaves is kept; on the new cell α
    is the one picked there, else its calibrated strength, else the norm default, and the samples already shown
    there at that α are painted at once."""
    if steer.alpha_from == "you" and steer.layer is not None and steer.pos is not None:
        memory = with_choice(memory, (steer.layer, steer.pos), steer.alpha)
    cell = (heat.layer, heat.pos)
    steer = follow_cell(steer, heat, memory.calibrated.get(cell), memory.chosen.get(cell))
    if (shown := memory.shown.get(steer_key(steer))) is not None:
        steer = replace(apply_steer_result(steer, shown), status=f"shown before at α {steer.alpha:.4g}")
    elif steer.rows:
        steer = replace(steer, status=f"cell changed: r steers at L{heat.layer} p{heat.pos}")
    return memory, steer


def needs_calibration(memory: SteerMemory, steer: SteerState, heat: HeatState) -> bool:
    """`r` on a cell with only the norm α calibrates first (unless that cell's calibration is already running)."""
    return steer.alpha_from == "norm" and memory.calibrating != (heat.layer, heat.pos)


def press_steer(memory: SteerMemory, steer: SteerState, heat: HeatState) -> tuple[SteerMemory, SteerState, bool]:
    """`r` at the cursor's cell starts a new steering run: the samples shown before for the same cell, α and
    prompts are painted again (False: no job), else the rows empty for a job asked for `memory.asked` (True)."""
    key = steer_key(replace(steer, layer=heat.layer, pos=heat.pos))
    memory = replace(memory, tag=memory.tag + 1)
    if (shown := memory.shown.get(key)) is not None:
        return memory, replace(apply_steer_result(steer, shown), status=f"shown before at α {steer.alpha:.4g}"), False
    return replace(memory, asked=key), start_steering(steer, heat.layer, heat.pos), True


def steer_streamed(memory: SteerMemory, steer: SteerState, tag: int, event: dict[str, Any]) -> SteerState:
    """A streamed piece of steering run `tag` (dropped when a newer run replaced it)."""
    return apply_steer_partial(steer, event) if tag == memory.tag else steer


def steer_finished(memory: SteerMemory, steer: SteerState, tag: int, result: Steered | None
                   ) -> tuple[SteerMemory, SteerState]:
    """Steering run `tag` ended: its samples painted and remembered, or (None: failed or cancelled) the pane says
    it stopped; a run that a newer one replaced changes nothing."""
    if tag != memory.tag:
        return memory, steer
    if result is None:
        return memory, replace(steer, streaming=False, status="steering stopped (r runs it again)")
    if memory.asked is not None:
        memory = remember_shown(memory, memory.asked, result)
    return memory, apply_steer_result(steer, result)


def calibration_started(memory: SteerMemory, steer: SteerState, cell: Cell) -> tuple[SteerMemory, SteerState]:
    """Calibration of `cell` runs; `r` meanwhile steers at the α on screen."""
    status = f"calibrating α at L{cell[0]} p{cell[1]}… (r steers now at α {steer.alpha:.4g})"
    return replace(memory, calibrating=cell), replace(steer, status=status)


def calibration_done(memory: SteerMemory, cell: Cell, strength: float) -> SteerMemory:
    """`cell`'s calibrated strength learned; it replaces the α the user had picked there."""
    memory = with_choice(with_calibrated(memory, {cell: strength}), cell, None)
    return replace(memory, calibrating=None) if memory.calibrating == cell else memory


def calibration_stopped(memory: SteerMemory, steer: SteerState, cell: Cell) -> tuple[SteerMemory, SteerState]:
    """`cell`'s calibration failed or was cancelled: said on the pane if it was the one running."""
    if memory.calibrating != cell:
        return memory, steer
    return replace(memory, calibrating=None), replace(steer, status="calibration did not finish (r steers at this α)")


# Agent events that only mark time (token streaming, bookkeeping) stay out of the tool-call log.
_AGENT_QUIET = frozenset({"token", "llm_call", "start", "assistant"})


def _hypothesis(raw: dict[str, Any]) -> Hypothesis:
    ident = raw.get("id")
    return Hypothesis(text=str(raw.get("hypothesis") or ""),
                      confidence=_maybe_float(raw.get("confidence")),
                      evidence=tuple(str(e) for e in raw.get("evidence") or ()),
                      id=ident if isinstance(ident, int) and not isinstance(ident, bool) else None,
                      status=str(raw.get("status") or ""))


def _answered_hypothesis(answered: AnsweredHypothesis) -> Hypothesis:
    """A hypothesis of the agent's final answer (typed by its result, where a streamed event is read as it came)."""
    ident = answered.id
    return Hypothesis(text=answered.hypothesis, confidence=answered.confidence, evidence=tuple(answered.evidence),
                      id=ident if isinstance(ident, int) else None, status=answered.status)


def _with_hypothesis(hypotheses: tuple[Hypothesis, ...], new: Hypothesis) -> tuple[Hypothesis, ...]:
    """The board after one event: an update of a known id replaces it where it stands, anything else is added."""
    if new.id is not None and any(h.id == new.id for h in hypotheses):
        return tuple(new if h.id == new.id else h for h in hypotheses)
    return (*hypotheses, new)


def apply_agent_event(agent: AgentState, event: dict[str, Any]) -> AgentState:
    """One streamed agent event (`type`: message, tool_call, tool_result, hypothesis, final, grade, …)."""
    kind = event.get("type") or "message"
    if kind in _AGENT_QUIET:
        return agent
    if kind == "hypothesis":
        return replace(agent, hypotheses=_with_hypothesis(agent.hypotheses, _hypothesis(event)))
    if kind == "final":
        return replace(agent, final=str(event.get("description") or ""))
    if kind == "grade":
        return replace(agent, grade=_grade_text(event))
    name = event.get("name") or "?"
    if kind == "tool_call":
        args = event.get("arguments") or {}
        shown_args = ", ".join(f"{k}={v}" for k, v in args.items()) if isinstance(args, dict) else str(args)
        line = f"→ {name}({_short(shown_args)})"
    elif kind == "tool_result":
        shown = {k: v for k, v in event.items() if k not in ("type", "seq", "t", "call_id", "name", "ok")}
        line = f"← {name}: {_short(event.get('result') or shown)}"
    elif kind in ("error", "protocol_error"):
        line = f"! {_short(event.get('message', ''), 200)}"
    else:
        line = f"· {_short(event.get('content') or '', 200)}"
    return replace(agent, log=(*agent.log, line))


def apply_agent_result(agent: AgentState, result: AgentRunResult) -> AgentState:
    """The agent's final answer (its first run's `result` and `grade`): its description, hypotheses and grade
    replace what streamed."""
    summary = result.runs[0] if result.runs else AgentRunSummary()
    grade = summary.grade
    answer = summary.result or AgentAnswer()
    hyps = tuple(_answered_hypothesis(h) for h in answer.hypotheses) or agent.hypotheses
    return replace(agent, status="done", note="", hypotheses=hyps, final=answer.description or agent.final,
                   grade=grade.text() if grade else agent.grade)


def agent_failed(agent: AgentState, run: str, keywords: Keywords | None) -> AgentState:
    """The agent could not run (no LLM, most often): how to give it one, the offline keyword hypothesis in its
    place, and CLI commands that work for this run."""
    note = (f"the agent needs an LLM: {LLM_HELP}. From a shell: `difflens agent {run} --keywords` (offline), "
            f"`difflens agent {run} --llm openai:MODEL`")
    return replace(agent, status="failed", note=note, keywords=keywords.text if keywords is not None else "")


def _grade_text(event: dict[str, Any]) -> str:
    """A streamed `grade` event as the final answer's grade reads (`?/5` for one that does not read)."""
    try:
        return Grade.from_json(event).text()
    except ParamsError:
        return "?/5"


def _maybe_float(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _short(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


DEMO_PAIR = {"base": "gemma-3-270m", "ft": "demo"}


@dataclass(frozen=True)
class Start:
    """What the app opens first: the start screen, a cached run, or a run to compute (the demo)."""

    run: str | None = None
    compute: dict[str, Any] | None = None

    @classmethod
    def demo(cls, **params: Any) -> Start:
        """The embedded default pair; the engine computes what is missing (or finds its cache)."""
        return cls(compute={**DEMO_PAIR, **params})

    @property
    def opens_workbench(self) -> bool:
        return self.run is not None or self.compute is not None
