"""A board's pair resolved once: its name, the pair with its resolved settings, the models its specs name and the
store key of its outcome. The board plans every pair into one `Planned` before anything runs, and the serial,
device and Ray runners take it as it is (a worker process gets its JSON and parses it once)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from engine.adl.request import request_for
from engine.judges.judge_config import resolve_judge
from engine.models.specs import ModelSpec, parse_spec
from engine.protocol.methods import TRIAGE_SETTINGS, TriagePair, TriageSettings
from engine.results.calibrated_steering import GRID_SEARCH
from engine.results.layer_choice import Criterion
from engine.results.significance import NULL_DESIGN
from engine.steering.generate import SAMPLING_RULE
from engine.triage import state
from engine.triage.hypothesis import one_line
from engine.triage.pairs import PairEntry
from store.errors import ActionableError

# Report settings that enter a pair's key only when not their default, so pairs finished before a setting was
# written into the key still hit (a default given explicitly is the default: the same key).
REPORT_KEYS = ("layer", "positions", "top_k", "steer", "n_prompts", "max_strength")
# Settings that enter a pair's key only when not their default value (judge: the resolved judge's identity).
JUDGING_DEFAULTS: dict[str, tuple[Any, ...]] = {"judge": ("offline",), "protocol": (None, "default"),
                                                "null_steer": (False,), "backend": ("local",)}
_DEFAULTS = TriageSettings()
# The methods a finished outcome was computed by: a board pair finished under an older null design, layer criterion,
# calibration search or sampling rule is triaged again (its stages that did not change still hit their caches).
METHODS: dict[str, Any] = {"null": NULL_DESIGN, "criterion": asdict(Criterion()), "calibration": GRID_SEARCH,
                           "sampling": SAMPLING_RULE}


@dataclass(frozen=True)
class Planned:
    """One pair of a board, resolved: `pair` is what it is triaged with; `specs` the (base, finetuned) models
    its specs name (None with `error` when they do not resolve: the pair is reported failed, nothing loads)."""

    name: str
    pair: TriagePair
    specs: tuple[ModelSpec, ModelSpec] | None
    key: str
    error: str | None = None

    @property
    def loads(self) -> tuple[ModelSpec, ...] | None:
        """The weights `MODELS` loads for this pair: each side's base checkpoint (adapters attach to it)."""
        if self.specs is None:
            return None
        base, ft = self.specs[0].base, self.specs[1].base
        return (base,) if ft == base else (base, ft)

    def row(self) -> dict[str, Any]:
        """What a board row names of the pair."""
        return {"name": self.name, "base": self.pair.base, "ft": self.pair.ft, "adapter": self.pair.adapter,
                "description": self.pair.description}

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "pair": self.pair.to_json(), "key": self.key, "error": self.error,
                "specs": [asdict(s) for s in self.specs] if self.specs is not None else None}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Planned:
        """A planned pair sent to a worker process (made by `to_json`, so only the pair is checked)."""
        specs = data["specs"]
        return cls(data["name"], TriagePair.from_json(data["pair"]),
                   (ModelSpec(**specs[0]), ModelSpec(**specs[1])) if specs is not None else None,
                   data["key"], data["error"])


def plan_pair(entry: PairEntry, settings: TriageSettings, llm: str | None) -> Planned:
    """The entry with its own settings over the board's, resolved (models that do not resolve make a planned
    failure). `llm`: the label of the LLM that writes the board's hypotheses."""
    own = replace(settings, **entry.settings)  # checked when the entry was read (`validate_pairs`)
    pair = TriagePair(**{name: getattr(own, name) for name in TRIAGE_SETTINGS}, base=entry.base, ft=entry.ft,
                      adapter=entry.adapter)
    return resolved(entry.name, pair, llm)


def on_device(item: Planned, device: str, llm: str | None) -> Planned:
    """The pair as a worker runs it on `device` (which enters its key), with the judge this process resolves
    (another machine's configuration must not pick another judge than the key names)."""
    return resolved(item.name, replace(item.pair, device=device, judge=resolve_judge(item.pair.judge).identity), llm)


def resolved(name: str, pair: TriagePair, llm: str | None) -> Planned:
    """The pair's models and key; a pair whose models do not resolve is planned with its error."""
    try:
        trust = pair.trust_remote_code
        specs = (parse_spec(pair.base, trust_remote_code=trust),
                 parse_spec(pair.ft, adapter=pair.adapter, trust_remote_code=trust))
        return Planned(name, pair, specs, _key(pair, llm))
    except ActionableError as exc:
        failed = Planned(name, pair, None, "", one_line(str(exc)))
        return replace(failed, key=state.pair_key({"entry": failed.row(), "error": "unresolved"}))


def _key(pair: TriagePair, llm: str | None) -> str:
    """What a finished outcome depends on: the models' identities, the run's inputs and the report settings."""
    request = request_for(pair)
    request.validate()
    judging = {"judge": resolve_judge(pair.judge).identity, "protocol": pair.protocol, "null_steer": pair.null_steer,
               "backend": pair.backend}
    report = {k: None if getattr(pair, k) == getattr(_DEFAULTS, k) else getattr(pair, k) for k in REPORT_KEYS}
    return state.pair_key({
        "base": request.base_spec.identity(), "ft": request.ft_spec.identity(), "corpus": request.corpus,
        "n": request.n, "k": request.k, "seed": request.seed, "layers": request.layers,
        "dtype": request.placement.dtype_name, "device": request.placement.device, "report": report,
        "description": pair.description, "llm": llm, "null": pair.null, "methods": METHODS}
        | {k: v for k, v in judging.items() if v not in JUDGING_DEFAULTS[k]})


def needs_work(item: Planned) -> bool:
    """Whether the pair resolves and has no finished outcome in the store."""
    return item.error is None and state.finished(item.key) is None
