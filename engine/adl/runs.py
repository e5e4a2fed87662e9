"""Cached ADL runs as the readouts see them: torch tensors plus the request that made them."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from engine.adl.depth import middle_layer
from engine.adl.request import AdlRequest
from engine.adl.stored_runs import KIND, resolve_run_id
from engine.errors import UserError
from engine.models.cache import MODELS
from engine.models.pair import ModelPair
from store import results


@dataclass
class AdlRun:
    """`mean_diff[i]` belongs to decoder layer `layers[i]`; positions are the k read positions."""

    run_id: str
    request: AdlRequest
    meta: dict[str, Any]
    mean_diff: Float[Tensor, "layer pos d_model"]
    mean_base: Float[Tensor, "layer pos d_model"]
    base_norm: Float[Tensor, "layer pos"]
    ft_norm: Float[Tensor, "layer pos"]
    layers: Int[Tensor, " layer"]
    inputs: dict[str, Any] = field(default_factory=dict)
    _models_checked: bool = field(default=False, repr=False)

    def layer_index(self, layer: int) -> int:
        """Row of decoder layer `layer` in the tensors (negative counts from the last layer)."""
        n_layers = int(self.meta["n_layers"])
        layer = layer + n_layers if layer < 0 else layer
        matches = (self.layers == layer).nonzero()
        if len(matches) == 0:
            raise UserError(f"layer {layer} is not in run {self.run_id} (layers {self.layers.tolist()})",
                            "pick one of the computed layers, or recompute with --layers")
        return int(matches[0])

    def check_position(self, pos: int) -> int:
        k = self.mean_diff.shape[1]
        if not 0 <= pos < k:
            raise UserError(f"position {pos} out of range for k={k}", f"pass a position between 0 and {k - 1}")
        return pos

    @property
    def middle_layer(self) -> int:
        """The paper's headline layer: relative depth 0.5 (the computed layer nearest to it)."""
        target = middle_layer(int(self.meta["n_layers"]))
        return int(self.layers[(self.layers - target).abs().argmin()])

    def pair(self, backend: str | None = None) -> ModelPair:
        """The run's models, where the run ran, or on `backend` (local | ndif) when given; refused when the
        request's model names now resolve to other weights than the run was computed with."""
        self.check_models()
        r = replace(self.request, backend=backend) if backend else self.request
        placements = r.placements
        return MODELS.pair(r.base_spec, r.ft_spec, placements.base, placements.ft)

    def check_models(self) -> None:
        """A stored request names models as typed (`demo`, a directory, a hub id); a name can come to mean
        other weights (an alias re-pointed, a directory retrained), and readouts of the run must not then run
        on them. Checked once per run, before any model loads (answers from the cache need no check)."""
        if self._models_checked or "base" not in self.inputs:
            return
        for side, spec in (("base", self.request.base_spec), ("ft", self.request.ft_spec)):
            if spec.identity() != self.inputs[side]:
                raise UserError(f"run {self.run_id} was computed with other weights than {spec.label()!r} names now",
                                "compute it again (difflens compute / triage with the models you mean)")
        self._models_checked = True


def load_run(run_id: str, *, trust_remote_code: bool = False, request: AdlRequest | None = None) -> AdlRun:
    """A run computed on this machine, named by its id or a unique prefix of it (imported session results are
    never here: `store.imported`).

    Its stored request is data: it names the run's models, but whether their repositories' custom code may
    run is decided by the caller now (`--trust-remote-code`), never by a flag kept in the store. A caller that
    just computed (or found) the run from its own `request` passes it, and the run's models are those."""
    run_id = resolve_run_id(run_id)
    stored = results.load(run_id)
    if stored is None or stored.kind != KIND:
        raise UserError(f"no ADL run {run_id!r} in the store", "run `difflens compute` or pick from `difflens runs`")
    if request is None:
        try:
            request = replace(AdlRequest.from_json(stored.meta["request"]), trust_remote_code=trust_remote_code)
        except (KeyError, TypeError, ValueError):
            raise UserError(f"run {run_id!r} does not say which models made it",
                            "compute it again with `difflens compute`") from None
    t = {name: torch.from_numpy(arr.copy()) for name, arr in stored.tensors.items()}
    return AdlRun(run_id=run_id, request=request, meta=stored.meta,
                  mean_diff=t["mean_diff"], mean_base=t["mean_base"], base_norm=t["base_norm"],
                  ft_norm=t["ft_norm"], layers=t["layers"], inputs=stored.inputs)
