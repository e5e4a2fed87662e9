"""peft adapters attached in place to one loaded base, each under its own name, switched without a copy.

One copy of the base weights serves the base and every adapter of it: a board of twenty LoRA finetunes of
an 8B base loads 16 GB once, not twenty times. At rest every adapter is off (the weights are the base);
`adapter_enabled` turns one on for a block, and `mixed_adapters` runs a batch whose rows each use their own
adapter (peft's `adapter_names`), so one forward serves several finetunes. Both hold the base's lock, so
no adapter is switched under a trace running in another thread.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any

from engine.errors import UserError

if TYPE_CHECKING:
    from engine.models.loading import LoadedModel

BASE_ROW = "__base__"  # peft's name for a row that runs without any adapter


def adapter_name(adapter: str) -> str:
    """A stable module-safe name for an adapter path or hub id."""
    return "a" + hashlib.sha256(adapter.encode()).hexdigest()[:16]


def adapter_view(base: LoadedModel, adapter: str) -> LoadedModel:
    """`base` with `adapter` attached (once) under its own name: a model sharing base's weights, nnsight
    wrapper and lock, whose `adapter_enabled(view, True)` turns on that adapter only."""
    name = adapter_name(adapter)
    with base.lock:
        if name not in _attached(base):
            _attach(base, adapter, name)
    view = replace(base, spec=replace(base.spec, adapter=adapter), adapter_name=name)
    view.__dict__["nn"] = base.nn
    return view


def _attached(model: LoadedModel) -> set[str]:
    return {name for layer in _tuner_layers(model) for name in getattr(layer, "lora_A", {})}


def _attach(model: LoadedModel, adapter: str, name: str) -> None:
    """Inject the adapter's layers named `name` and load its weights; one that does not land is refused
    (peft leaves unmatched weights at init, and a zero lora_B would silently make the finetune the base)."""
    import peft
    from peft.functional import cast_adapter_dtype, inject_adapter_in_model, set_peft_model_state_dict

    try:
        config = peft.PeftConfig.from_pretrained(adapter)
        if config.is_prompt_learning:
            raise ValueError(f"{config.peft_type} adapters wrap the forward and cannot be attached in place")
        before = {id(p) for p in model.hf.parameters()}
        inject_adapter_in_model(config, model.hf, adapter_name=name)
        cast_adapter_dtype(model.hf, name)
        added = {n for n, p in model.hf.named_parameters() if id(p) not in before}
        state = {key.removeprefix("base_model.model."): value
                 for key, value in peft.utils.load_peft_weights(adapter, device="cpu").items()}
        missing_keys, unexpected_keys = set_peft_model_state_dict(  # type: ignore[attr-defined]  # torch's untyped result
            model.hf, state, adapter_name=name)
        missing = [key for key in missing_keys if key in added]
        if missing or unexpected_keys:
            raise ValueError(f"weights with no place: {(list(unexpected_keys) or missing)[:3]}")
    except (ValueError, KeyError, RuntimeError, OSError) as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
        detail = next((line for line in lines if "size mismatch" in line), lines[0])  # torch puts it on line 2
        raise UserError(f"adapter {adapter!r} does not fit {model.spec.label()!r}: {detail[:200]}",
                        "pass the base model the adapter was trained on") from exc
    model.hf.eval()
    model.hf.requires_grad_(False)
    for layer in _tuner_layers(model):
        layer.enable_adapters(False)


def _tuner_layers(model: LoadedModel) -> list:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [m for m in model.hf.modules() if isinstance(m, BaseTunerLayer)]


def _state(layers: list) -> list[tuple[list[str], bool]]:
    return [(list(layer.active_adapters), not layer.disable_adapters) for layer in layers]


def _restore(layers: list, state: list[tuple[list[str], bool]]) -> None:
    for layer, (active, was_on) in zip(layers, state, strict=True):
        layer.set_adapter(active, inference_mode=True)
        layer.enable_adapters(was_on)


@contextlib.contextmanager
def adapter_enabled(model: LoadedModel, enabled: bool) -> Iterator[None]:
    """Run the block with the view's adapter on (`enabled`) or every adapter off; restores the state after."""
    with model.lock:
        layers = _tuner_layers(model)
        before = _state(layers)
        for layer in layers:
            if enabled and model.adapter_name is not None:
                layer.set_adapter(model.adapter_name, inference_mode=True)
            layer.enable_adapters(enabled and model.adapter_name is not None)
        try:
            yield
        finally:
            _restore(layers, before)


@contextlib.contextmanager
def mixed_adapters(views: Sequence[LoadedModel], rows_each: int) -> Iterator[LoadedModel]:
    """Yield the shared model set up so that rows [i·rows_each, (i+1)·rows_each) of the next forwards run
    with `views[i]`'s adapter (None for a view without one: the base)."""
    names = [view.adapter_name or BASE_ROW for view in views for _ in range(rows_each)]
    model = views[0]
    with model.lock:
        layers = _tuner_layers(model)
        if any(view.hf is not model.hf for view in views):
            raise UserError("a mixed-adapter batch needs adapters of one loaded base", "group pairs by base")
        if not all(hasattr(layer, "_mixed_batch_forward") for layer in layers):
            raise UserError("only LoRA adapters choose their adapter per row", "run these pairs one by one")
        before = _state(layers)
        hooks = [layer.register_forward_pre_hook(partial(_with_adapter_names, names=names), with_kwargs=True)
                 for layer in layers]
        for layer in layers:
            layer.enable_adapters(True)
        try:
            yield model
        finally:
            for hook in hooks:
                hook.remove()
            _restore(layers, before)


def _with_adapter_names(module: Any, args: tuple, kwargs: dict, names: list[str]) -> tuple[tuple, dict]:
    return args, {**kwargs, "adapter_names": names}
