"""What determines an ADL run: both models, the corpus, n, k, seed, layers, dtype. Its key is the run id."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from engine.adl.stored_runs import KIND
from engine.corpus.sources import CorpusSpec, parse_corpus
from engine.errors import UserError
from engine.models.device import Placement
from engine.models.pair_placement import PairPlacement, resolve_pair_placement
from engine.models.specs import TypedPair
from engine.protocol.methods import AdlSettings
from store.results import key_for

MAX_N = 1_000_000       # texts: the paper reads 10,000; a GPU box 16k+
MAX_K = 4096            # positions after BOS: beyond any reasonable context share
MAX_BATCH = 65_536


@dataclass(frozen=True)
class AdlRequest(TypedPair):
    """The user's request as typed (spec strings), so a run can be reloaded later by what it names."""

    base: str
    ft: str
    adapter: str | None = None
    corpus: str = AdlSettings.corpus
    n: int = AdlSettings.n
    k: int = AdlSettings.k
    seed: int = AdlSettings.seed
    layers: tuple[int, ...] | None = None
    device: str = AdlSettings.device
    dtype: str = AdlSettings.dtype
    batch_size: int = AdlSettings.batch_size
    trust_remote_code: bool = AdlSettings.trust_remote_code
    sequential: bool = AdlSettings.sequential
    device_map: str | None = None
    place: str | None = None
    backend: str = AdlSettings.backend
    max_request_rows: int | None = None
    # Read positions from the BOS token on, as the reference does (`--protocol paper`): position 0 is the BOS and
    # position p the p-th token; by default difflens reads the k tokens after the BOS. Chat windows are unchanged.
    from_bos: bool = False

    def validate(self) -> None:
        for name, value, most, fix in (("n", self.n, MAX_N, "pass -n 64 or more (256 default)"),
                                       ("k", self.k, MAX_K, "pass -k 5 (the paper's default)"),
                                       ("batch size", self.batch_size, MAX_BATCH, "pass --batch-size 32")):
            if value <= 0:
                raise UserError(f"{name} must be positive, got {value}", fix)
            if value > most:
                raise UserError(f"{name} must be at most {most:,}, got {value:,}", fix)

    @property
    def corpus_spec(self) -> CorpusSpec:
        return parse_corpus(self.corpus)

    @property
    def placement(self) -> Placement:
        """Where the base model runs (and the finetuned one, unless `place`/`device_map` split them)."""
        return self.placements.base

    @property
    def placements(self) -> PairPlacement:
        return resolve_pair_placement(self.device, self.dtype, self.device_map, self.place, self.backend)

    def resolve_layers(self, n_layers: int) -> list[int]:
        if self.layers is None:
            return list(range(n_layers))
        out = sorted({layer + n_layers if layer < 0 else layer for layer in self.layers})
        if not out or out[0] < 0 or out[-1] >= n_layers:
            named = f"{list(self.layers)}" if len(self.layers) <= 16 else f"{out[0]}…{out[-1]} ({len(out)} layers)"
            raise UserError(f"layers {named} out of range for a {n_layers}-layer model",
                            f"pass layers between 0 and {n_layers - 1}")
        return out

    def inputs(self, n_layers: int) -> dict[str, Any]:
        """Everything that determines the result (batch size, devices and sequential mode do not; NDIF runs
        the server's dtype, so its runs are keyed apart)."""
        inputs = {"base": self.base_spec.identity(), "ft": self.ft_spec.identity(),
                  "corpus": self.corpus_spec.identity(), "n": self.n, "k": self.k, "seed": self.seed,
                  "layers": self.resolve_layers(n_layers), "dtype": self.placement.dtype_name}
        return (inputs | ({"backend": self.backend} if self.backend != "local" else {})
                | ({"from_bos": True} if self.from_bos else {}))

    def run_id(self, n_layers: int) -> str:
        return key_for(KIND, self.inputs(n_layers))

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["layers"] = list(self.layers) if self.layers is not None else None
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AdlRequest:
        """A stored request (raises TypeError for one that is not an object)."""
        if not isinstance(data, dict):
            raise TypeError("a stored request must be an object")
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if fields.get("layers") is not None:
            fields["layers"] = tuple(fields["layers"])
        return cls(**fields)


def request_for(params: AdlSettings) -> AdlRequest:
    """The AdlRequest named by typed params (shared by every op that computes or reuses a run, and the board)."""
    return AdlRequest(
        base=params.base, ft=params.ft, adapter=params.adapter, corpus=params.corpus, n=params.n, k=params.k,
        seed=params.seed, layers=tuple(params.layers) if params.layers is not None else None,
        device=params.device, dtype=params.dtype, batch_size=params.batch_size,
        trust_remote_code=params.trust_remote_code, sequential=params.sequential, device_map=params.device_map,
        place=params.place, backend=params.backend, max_request_rows=params.max_request_rows)
