"""Loaded models kept warm: an LRU of models within a memory budget, shared by every op."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict

import psutil
import torch

from engine.jobs import refuse_models
from engine.models.adapters import adapter_view
from engine.models.device import Placement
from engine.models.loading import LoadedModel, load_model
from engine.models.pair import ModelPair
from engine.models.remote import load_remote_model
from engine.models.specs import ModelSpec


def _budget_bytes() -> int:
    if env := os.environ.get("DIFFLENS_MODEL_BUDGET_GB"):
        return int(float(env) * 2**30)
    if torch.cuda.is_available():
        return int(0.8 * sum(torch.cuda.get_device_properties(i).total_memory
                             for i in range(torch.cuda.device_count())))
    return int(0.5 * psutil.virtual_memory().total)


def _size_bytes(model: LoadedModel) -> int:
    """Bytes held here (an NDIF model's meta parameters hold none)."""
    return sum(p.numel() * p.element_size() for p in model.hf.parameters() if p.device.type != "meta")


class ModelCache:
    """Loads each (spec, placement) once; evicts least recently used models past the budget.

    Local adapters are not entries of their own: an adapter spec is its base's entry with the adapter
    attached under its own name (one copy of the base weights for every adapter of it)."""

    def __init__(self, budget_bytes: int | None = None) -> None:
        self.budget = budget_bytes if budget_bytes is not None else _budget_bytes()
        self._models: OrderedDict[tuple[ModelSpec, Placement], LoadedModel] = OrderedDict()
        self._lock = threading.RLock()

    def model(self, spec: ModelSpec, placement: Placement) -> LoadedModel:
        refuse_models(spec.label())
        key = (spec, placement)
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            loaded: LoadedModel
            if placement.backend == "ndif":
                loaded = load_remote_model(spec)
            elif spec.adapter:
                return adapter_view(self.model(spec.base, placement), spec.adapter)
            else:
                loaded = load_model(spec, placement)
            self._models[key] = loaded
            self._evict(keep=key)
            return loaded

    def has(self, spec: ModelSpec, placement: Placement) -> bool:
        """Whether `spec` needs no loading (an adapter's base is warm: attaching is cheap)."""
        return (spec if placement.backend == "ndif" else spec.base, placement) in self._models

    def release(self, spec: ModelSpec, placement: Placement) -> None:
        """Drop a model now (sequential mode frees the base before loading the finetuned model)."""
        with self._lock:
            self._models.pop((spec, placement), None)
        import gc

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def pair(self, base: ModelSpec, ft: ModelSpec, placement: Placement,
             ft_placement: Placement | None = None) -> ModelPair:
        """The pair; an adapter finetune of `base` shares base's weights (adapter toggled per side), except
        on NDIF, where the server applies the adapter per request. `ft_placement` puts ft elsewhere."""
        if ft.adapter and base.adapter is None and ft.base == base and placement.backend == "local":
            view = self.model(ft, placement)
            return ModelPair(base=view, ft=view)
        pair = ModelPair(base=self.model(base, placement), ft=self.model(ft, ft_placement or placement))
        pair.check_diffable()
        return pair

    def loaded(self) -> list[dict[str, object]]:
        with self._lock:
            return [{"spec": spec.label(), "device": placement.device, "dtype": placement.dtype_name,
                     "bytes": _size_bytes(model)} for (spec, placement), model in self._models.items()]

    def _evict(self, keep: tuple[ModelSpec, Placement]) -> None:
        while len(self._models) > 1 and sum(_size_bytes(m) for m in self._models.values()) > self.budget:
            oldest = next(iter(self._models))
            if oldest == keep:
                break
            del self._models[oldest]
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


MODELS = ModelCache()
