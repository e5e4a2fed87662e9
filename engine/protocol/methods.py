"""Every engine method: its name, its typed params (each default written here once), whether it runs as a job.

The engine registers one op per `Method` (`engine.ops.op`); the CLI and the TUI build the params dataclass
and call the `Method`, so no method name or default is spelled anywhere else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Generic, Literal, Self, TypeVar

from engine.protocol import report_results as rr
from engine.protocol import results as r
from engine.protocol import wire
from engine.protocol.params import Params, ParamsError, count, index

P = TypeVar("P", bound=Params)
R = TypeVar("R", bound=r.Result)


@dataclass(frozen=True)
class Method(Generic[P, R]):
    """One engine method: its params and result types (invariant in both, so a call with another method's params
    fails the type check); `long` ones run as jobs (progress, cancel), the rest answer at once."""

    name: str
    params: type[P]
    result: type[R]
    long: bool
    doc: str


# ---- fixed choices: each list written once (the params validator, typer's choices and the workbench's cycles
# read it through `params.choices`) ----

Side = Literal["ft", "base"]                 # which model steers or reads (the first: the default)
Source = Literal["diff", "base", "ft"]       # what the logit lens reads
Backend = Literal["local", "ndif"]           # where a readout or steering runs (None: where the run ran)
Protocol = Literal["default", "paper"]     # the default protocol or the paper's (calibration, agent, triage)
ToolCalling = Literal["auto", "native", "text"]
CausalMode = Literal["patch", "direction"]
Patch = Literal["base", "diff"]
Ablate = Literal["base", "zero"]
PatchDirection = Literal["base_to_ft", "ft_to_base", "both"]   # the direction test's patches (the reference's)
Modules = Literal["all", "attention", "mlp"]


# ---- steering temperatures (the engine calibrates and samples at them; the workbench steers at them) ----

# The default protocol samples cooler than the reference (calibration at T = 1.2, final samples at T = 1.1): at
# those temperatures a small model's own unsteered text is already word salad, which the offline coherence judge
# cannot tell from steering damage. On Gemma 3 270M the demo's calibration passed nothing above α = 0.125 at
# T = 1.2 (4 samples of salad at every strength) and α = 0.25 at every position at T = 0.7, where its unsteered
# text reads as English. `--protocol paper` keeps the reference's temperatures. Those numbers were measured while
# difflens sampled the whole distribution; with the model's own top-k/top-p (now, as the reference) the demo's
# unsteered text at T = 1.2 reads as English (docs/paper-protocol.md), so this may go once calibration agrees.
DEFAULT_TEMPERATURE = 0.7
PAPER_CALIBRATION_TEMPERATURE = 1.2
PAPER_SAMPLE_TEMPERATURE = 1.1


# ---- params shared by several methods ----

@dataclass(frozen=True, kw_only=True)
class NoParams(Params):
    """A method that takes nothing."""


@dataclass(frozen=True, kw_only=True)
class RunParams(Params):
    """A cached ADL run; custom model code only if these params ask for it now."""

    run: str
    trust_remote_code: bool = False


@dataclass(frozen=True, kw_only=True)
class CellParams(RunParams):
    """A (layer, pos) cell of a run; `layer` a number, digits or `middle` (None: chosen from the evidence)."""

    layer: int | str | None = index(None)
    pos: int = index(0)


@dataclass(frozen=True, kw_only=True)
class ComputeSettings(Params):
    """What an ADL run of a pair is computed from, besides the two models."""

    corpus: str = "self:"
    n: int = 256
    k: int = 5
    seed: int = 0
    layers: list[int] | None = None
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int = 32
    trust_remote_code: bool = False
    sequential: bool = False
    device_map: str | None = None
    place: str | None = None
    backend: Backend = "local"
    max_request_rows: int | None = None


@dataclass(frozen=True, kw_only=True)
class AdlSettings(ComputeSettings):
    """What an ADL run is computed from (a run's id is a content key of these)."""

    base: str
    ft: str
    adapter: str | None = None


@dataclass(frozen=True, kw_only=True)
class CalibrationParams(CellParams):
    """How steering strengths are calibrated (None: the protocol's, the device's and the configured judge's)."""

    side: Side = "ft"
    protocol: Protocol | None = None
    method: str | None = None
    max_strength: float | None = None
    judge: str | None = None


@dataclass(frozen=True, kw_only=True)
class PairParams(Params):
    """A model pair for the lenses: `base`/`ft`[/`adapter`], or the pair of a cached ADL `run`."""

    base: str | None = None
    ft: str | None = None
    adapter: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    trust_remote_code: bool = False
    run: str | None = None


@dataclass(frozen=True, kw_only=True)
class EvidenceParams(Params):
    """What an agent reads: a cached ADL `run` or a recorded-environment dict (`environment`)."""

    environment: object = None
    run: str | None = None
    trust_remote_code: bool = False
    layer: int | str | None = index(None)
    protocol: Protocol | None = None
    judge: str | None = None


# ---- one params class per method ----

@dataclass(frozen=True, kw_only=True)
class AdlCompute(AdlSettings):
    """adl.compute"""


@dataclass(frozen=True, kw_only=True)
class SteerCalibrate(CalibrationParams):
    """steer.calibrate"""


# how many of the shipped steering prompts a report (and its calibration) steers with
REPORT_PROMPTS = 4


@dataclass(frozen=True, kw_only=True)
class SteerGenerate(CalibrationParams):
    """steer.generate: `component` = {"result": a lens.pca result, "index": i} steers along that component;
    None `prompts`: the first `n_prompts` shipped prompts (None: all of them)."""

    strengths: list[float] | None = None
    prompts: list[str] | None = None
    n_prompts: int | None = count(None, 1000)
    n_samples: int = count(1, 1000)
    max_new_tokens: int = count(64, 8192)
    temperature: float = 0.0
    seed: int = 0
    backend: Backend | None = None
    component: object = None


REPORT_STEERING = SteerGenerate(run="", n_prompts=REPORT_PROMPTS, n_samples=1, max_new_tokens=32,
                                temperature=DEFAULT_TEMPERATURE)
"""The steering samples of a triage report and of the workbench's `r`: one set, so a triage's samples answer the
workbench's first steering from the cache. The default calibration draws exactly these (its prompts, samples per
prompt, length and temperature) at every strength it tries, so the report's samples are its samples at the chosen
strength and cost nothing more (engine/results/calibrated_steering.py)."""


@dataclass(frozen=True, kw_only=True)
class LogitLens(CellParams):
    """readout.logit_lens"""

    top_k: int = count(20)
    source: Source = "diff"
    head: Side | None = None
    backend: Backend | None = None


@dataclass(frozen=True, kw_only=True)
class LensGrid(RunParams):
    """readout.lens_grid (None layers/positions: all of the run's)"""

    top_k: int = count(10)
    layers: list[int] | None = None
    positions: list[int] | None = None
    source: Source = "diff"
    head: Side | None = None
    backend: Backend | None = None


@dataclass(frozen=True, kw_only=True)
class Patchscope(CellParams):
    """readout.patchscope"""

    top_k: int = count(20)
    scales: list[float] | None = None
    backend: Backend | None = None
    judge: str | None = None


@dataclass(frozen=True, kw_only=True)
class TriageSettings(ComputeSettings):
    """Everything a triage reads besides the pair itself, each default written here once: `triage.pair` extends
    it, and a board's `settings:` block, the settings it is called with and a pair's own keys are partial JSON
    objects of it, merged and parsed into one (`overridden`). The CLI's triage flags take their defaults here."""

    layer: int | str | None = index(None)
    positions: list[int] | None = None
    description: str | None = None
    top_k: int = count(20)
    steer: bool = True
    n_prompts: int = REPORT_PROMPTS
    max_strength: float | None = None
    judge: str | None = None
    protocol: Protocol | None = None
    null: int = 8  # random adapters of the finetune's rank and norm the report is tested against (0: none)
    null_steer: bool = False  # also steer every null adapter for the steering gain's test (N more calibrations)

    def overridden(self, overrides: Mapping[str, Any], where: str) -> Self:
        """These settings with `overrides` (a partial JSON object of them) applied and checked."""
        return replace(self, **given_settings(overrides, where))


TRIAGE_SETTINGS = tuple(f.name for f in fields(TriageSettings))
"""The setting names: the keys a board file's `settings:` block, a board's `settings` and a pair may give."""


def given_settings(overrides: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A partial JSON object of triage settings, parsed once: the typed values of the keys given (null: not given).
    An unknown key or a bad value is one `ParamsError` naming `where` and the key."""
    if unknown := sorted(set(map(str, overrides)) - set(TRIAGE_SETTINGS)):
        raise ParamsError(f"{where}: unknown setting(s) {', '.join(unknown)}",
                          f"allowed settings: {', '.join(sorted(TRIAGE_SETTINGS))}")
    given = {k: v for k, v in overrides.items() if v is not None}
    if not given:
        return {}
    try:
        parsed = TriageSettings.from_json(given)
    except ParamsError as exc:
        raise ParamsError(f"{where}: {exc.problem}", exc.fix) from None
    return {name: getattr(parsed, name) for name in given}


@dataclass(frozen=True, kw_only=True)
class TriagePair(AdlSettings, TriageSettings):
    """triage.pair"""


@dataclass(frozen=True, kw_only=True)
class Trajectory(TriagePair):
    """trajectory.run: a series of finetunes of `base` triaged on one base pass: `ft`'s training checkpoints
    (`checkpoints`), the interpolation base + t·(ft − base) for each t in `interpolate`, or hub revisions
    (`ft` = ID@REV1,REV2,…). Steering (for the gain) is off by default: it costs minutes per step on a CPU."""

    checkpoints: bool = False
    interpolate: list[float] | None = None
    steer: bool = False


@dataclass(frozen=True, kw_only=True)
class BoardOptions(Params):
    """How a board runs, beside what each pair is triaged with: `llm` writes the hypotheses (None: the configured
    one, else keywords); `devices` (cuda:0,cuda:1) or `ray` (auto, HOST:PORT) spread the pairs."""

    llm: str | None = None
    devices: str | None = None
    ray: str | None = None


@dataclass(frozen=True, kw_only=True)
class TriageBoard(BoardOptions):
    """triage.board: `pairs` a pairs file, a list of pairs or hub:BASE_ID[?TEXT]; `settings` a partial
    `TriageSettings` object over the file's (a pair's own keys override both, triage's defaults fill the rest)."""

    pairs: object = None
    limit: int | None = None
    name: str = "pairs"
    reports: bool = False
    settings: dict[str, object] | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        """Sessions recorded before the settings were one object sent them beside `pairs`: they are folded into
        `settings` (its own keys win), so a replayed or re-run board means what it meant."""
        if isinstance(data, Mapping):
            own = {f.name for f in fields(cls)}
            flat = {k: v for k, v in data.items() if k in TRIAGE_SETTINGS and k not in own}
            if flat:
                given = data.get("settings")
                data = {**{k: v for k, v in data.items() if k not in flat},
                        "settings": {**flat, **(given if isinstance(given, Mapping) else {})}}
        return super().from_json(data)


@dataclass(frozen=True, kw_only=True)
class MakeData(Params):
    """organism.make_data"""

    recipe: str
    out: str
    n: int = 400
    seed: int = 0


@dataclass(frozen=True, kw_only=True)
class TrainOrganism(Params):
    """organism.train (`out` None: the local organisms folder, named after the data file)"""

    base: str
    data: str
    out: str | None = None
    pretrain_corpus: str | None = None
    steps: int = 60
    lr: float = 2e-3
    lora_rank: int = 8
    mix_pretrain: float = 0.0
    seed: int = 0
    batch_size: int = 8
    max_length: int = 64
    target_modules: list[str] | None = None
    device: str = "auto"
    checkpoints: int = 0


@dataclass(frozen=True, kw_only=True)
class TextsParams(PairParams):
    """Texts for a lens: `texts`, or `n` texts of a `corpus` drawn with `seed`."""

    texts: list[str] | None = None
    corpus: str | None = None
    seed: int = 0


@dataclass(frozen=True, kw_only=True)
class LensKl(TextsParams):
    """lens.kl"""

    n: int = 20
    layer: int | None = index(None)
    top_n: int = count(10)
    max_tokens: int = count(128)
    window: int = count(12)
    batch_size: int = count(4)


@dataclass(frozen=True, kw_only=True)
class LensAmplify(PairParams):
    """lens.amplify (`layers` [first, last]; None prompts: the calibration prompts)"""

    layers: list[int] | None = None
    modules: Modules = "all"
    prompts: list[str] | None = None
    factors: list[float] | None = None
    max_new_tokens: int = count(48)
    temperature: float = 0.0
    seed: int = 0
    chat: bool = True


@dataclass(frozen=True, kw_only=True)
class LensMine(TextsParams):
    """lens.mine"""

    n: int = 50
    top_k: int = count(20)
    n_tokens: int = count(30)
    examples: int = count(3)
    max_tokens: int = count(128)
    topics: bool = False
    n_topics: int = count(5)
    batch_size: int = count(4)


@dataclass(frozen=True, kw_only=True)
class LensCausal(PairParams):
    """lens.causal (`k` None: the run's k, else 5; `chat` a corpus for the direction test's chat texts; None `n`,
    `max_tokens`, `n_controls` (of each kind), `patch_direction` (base_to_ft | ft_to_base | both) and `after_k`:
    the `protocol`'s, engine/lenses/direction.py `CAUSAL_PROTOCOLS`)"""

    mode: CausalMode = "patch"
    patch: Patch = "base"
    layer: int | str | None = index(None)
    k: int | None = count(None)
    n: int | None = count(None)
    seed: int = 0
    generic: str = "generic:"
    recipe: str | None = None
    ft_corpus: str | None = None
    max_tokens: int | None = count(None)
    batch_size: int = count(4)
    chat: str | None = None
    pos: int | None = index(None)
    ablate: Ablate = "base"
    n_controls: int | None = count(None)
    protocol: Protocol | None = None
    patch_direction: PatchDirection | None = None
    after_k: int | None = index(None)


@dataclass(frozen=True, kw_only=True)
class LensPca(TextsParams):
    """lens.pca (`corpus` None: the shipped generic text unless `texts` are given)"""

    n: int = 256
    layer: int | str | None = index(None)
    pos: int | None = index(None)
    n_components: int = count(5)
    top_k: int = count(10)
    batch_size: int = count(8)


@dataclass(frozen=True, kw_only=True)
class AgentRun(EvidenceParams):
    """agent.run (None budgets, temperature and max_tokens: the protocol's)"""

    llm: str | None = None
    tool_calling: ToolCalling = "auto"
    budget: int | None = None
    llm_calls: int | None = None
    token_budget: int | None = None
    stream: bool = True
    organism_description: str | None = None
    organism_type: str | None = None
    lenses: bool = False
    baseline: bool = False
    compare: bool = False
    repeat: int = 1
    grade: bool = False
    grader_llm: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    llm_timeout: float | None = None  # seconds per LLM request (None: DIFFLENS_LLM_TIMEOUT, config, 120)


@dataclass(frozen=True, kw_only=True)
class AgentKeywords(EvidenceParams):
    """agent.keywords"""

    top: int = count(12)


@dataclass(frozen=True, kw_only=True)
class JobRef(Params):
    """A job by id."""

    job: str


@dataclass(frozen=True, kw_only=True)
class JobFollow(Params):
    """A job by id, or None: every job."""

    job: str | None = None


@dataclass(frozen=True, kw_only=True)
class Auth(Params):
    """The TCP token."""

    token: str


ADL_COMPUTE = Method("adl.compute", AdlCompute, r.AdlComputed, True,
                     "Mean activation difference (ft − base) on the first k tokens of a corpus, cached by content.")
ADL_RUNS = Method("adl.runs", NoParams, r.AdlRuns, False, "Cached ADL runs, newest first.")
ADL_SUMMARY = Method("adl.summary", RunParams, r.AdlSummary, False,
                     "Per layer × position norms of one run (the heatmap's metrics) and its report layer with "
                     "every layer's score.")
STEER_CALIBRATE = Method("steer.calibrate", SteerCalibrate, r.SteerCalibrated, True,
                         "Largest coherent strength at (layer, pos); all positions of the layer are calibrated in one "
                         "batch.")
STEER_GENERATE = Method("steer.generate", SteerGenerate, r.Steered, True,
                        "Steered beside unsteered text for prompts × strengths, one generate call, streamed as it "
                        "comes.")
LOGIT_LENS = Method("readout.logit_lens", LogitLens, r.LensCell, False,
                    "Logit-lens top tokens of one (layer, pos) cell of diff, base or ft (the whole grid is cached).")
LENS_GRID = Method("readout.lens_grid", LensGrid, r.LensGridResult, False,
                   "Logit-lens top tokens of every layer × position (or the given layers) of diff, base or ft.")
PATCHSCOPE = Method("readout.patchscope", Patchscope, r.PatchscopeCell, True,
                    "Patchscope of the diff at one layer, every position in one batch (cached); returns `pos`'s "
                    "scales.")
TRIAGE_PAIR = Method("triage.pair", TriagePair, rr.TriageReport, True,
                     "Compute + logit lens + Patchscope + calibrated steering + relevance + keyword hypothesis for a "
                     "pair.")
TRIAGE_BOARD = Method("triage.board", TriageBoard, rr.TriageBoardResult, True,
                      "Triage a list of pairs (file or list) into a board sorted by trace strength; finished pairs "
                      "skipped.")
TRAJECTORY = Method("trajectory.run", Trajectory, rr.TrajectoryResult, True,
                    "Triage a series of finetunes of one base (checkpoints, interpolation, revisions) on one base "
                    "pass and one null: per step the significance, layer, headline tokens and steering gain.")
TRAJECTORIES = Method("trajectory.list", NoParams, rr.Trajectories, False,
                      "Stored trajectories, newest first (without reports).")
TRIAGE_BOARDS = Method("triage.boards", NoParams, rr.LatestBoard, False,
                       "The latest triage board from the store (pairs by score, without reports); `board` null when "
                       "none.")
NDIF_MODELS = Method("ndif.models", NoParams, r.NdifModels, False,
                     "Models NDIF has deployed (RUNNING ones answer now); a one-line error when NDIF cannot be "
                     "reached.")
ORGANISM_MAKE_DATA = Method("organism.make_data", MakeData, r.DataWritten, False,
                            "Write a recipe's synthetic corpus (.txt or .jsonl) and its description sidecar.")
ORGANISM_TRAIN = Method("organism.train", TrainOrganism, r.OrganismTrained, True,
                        "LoRA-finetune a base model on narrow documents; writes a peft adapter dir + organism.json.")
ORGANISM_LIST = Method("organism.list", NoParams, r.Organisms, False,
                       "The paper's registry organisms, the shipped demos, local organisms and the data recipes.")
LENS_KL = Method("lens.kl", LensKl, r.KlAnswer, True,
                 "Per-token KL(ft‖base) and activation-difference norm on texts; the top max-divergence snippets.")
LENS_AMPLIFY = Method("lens.amplify", LensAmplify, r.AmplifyAnswer, True,
                      "Generate with the finetune's change scaled by each factor, beside base and plain finetune.")
LENS_MINE = Method("lens.mine", LensMine, r.MineAnswer, True,
                   "Tokens most often in the top-K of (ft − base) log-probs over a corpus, with contexts and topics.")
LENS_CAUSAL = Method("lens.causal", LensCausal, r.CausalAnswer, True,
                     "Loss change when the finetune's first k positions are patched, or the paper's direction test.")
LENS_PCA = Method("lens.pca", LensPca, r.PcaAnswer, True,
                  "Principal components of the per-text (ft − base) differences at (layer, pos), read by the logit "
                  "lens.")
AGENT_RUN = Method("agent.run", AgentRun, r.AgentRunResult, True,
                   "Run the interpretability agent on ADL evidence (or the baseline); optionally graded, or compared.")
AGENT_KEYWORDS = Method("agent.keywords", AgentKeywords, r.Keywords, False,
                        "The offline keyword hypothesis from the ADL evidence (no LLM; not an agent).")

OPS: tuple[Method[Any, Any], ...] = (
    ADL_COMPUTE, ADL_RUNS, ADL_SUMMARY, STEER_CALIBRATE, STEER_GENERATE, LOGIT_LENS, LENS_GRID, PATCHSCOPE,
    TRIAGE_PAIR, TRIAGE_BOARD, TRIAGE_BOARDS, TRAJECTORY, TRAJECTORIES, NDIF_MODELS, ORGANISM_MAKE_DATA,
    ORGANISM_TRAIN, ORGANISM_LIST,
    LENS_KL, LENS_AMPLIFY, LENS_MINE, LENS_CAUSAL, LENS_PCA, AGENT_RUN, AGENT_KEYWORDS)
BY_NAME: dict[str, Method[Any, Any]] = {method.name: method for method in OPS}

# Built-in methods the engine answers itself (see `wire` for what they return).
ENGINE_AUTH = Method(wire.ENGINE_AUTH, Auth, r.Ack, False, "built-in")
ENGINE_STATUS = Method(wire.ENGINE_STATUS, NoParams, r.EngineStatus, False, "built-in")
ENGINE_METHODS = Method(wire.ENGINE_METHODS, NoParams, r.Ack, False, "built-in")
ENGINE_HELLO = Method(wire.ENGINE_HELLO, NoParams, r.Ack, False, "built-in")
ENGINE_SHUTDOWN = Method(wire.ENGINE_SHUTDOWN, NoParams, r.Ack, False, "built-in")
JOB_LIST = Method(wire.JOB_LIST, NoParams, r.Ack, False, "built-in")
JOB_CANCEL = Method(wire.JOB_CANCEL, JobRef, r.Ack, False, "built-in")
JOB_RESULT = Method(wire.JOB_RESULT, JobRef, r.Ack, False, "built-in")
JOB_SUBSCRIBE = Method(wire.JOB_SUBSCRIBE, JobFollow, r.Ack, False, "built-in")
