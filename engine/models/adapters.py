"""peft adapters attached in place (nnsight's `peft.attach`), switched off and on without a copy.

Keeping one copy of the base weights and toggling the adapter halves the memory of a base-vs-LoRA pair.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from engine.errors import UserError

if TYPE_CHECKING:
    from engine.models.loading import LoadedModel


def attach_adapter(model: LoadedModel, adapter: str) -> None:
    from nnsight.modeling import peft as nnsight_peft

    try:
        nnsight_peft.attach(model.hf, adapter)
    except (ValueError, KeyError, RuntimeError) as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
        detail = next((line for line in lines if "size mismatch" in line), lines[0])  # torch puts it on line 2
        raise UserError(f"adapter {adapter!r} does not fit {model.spec.label()!r}: {detail[:200]}",
                        "pass the base model the adapter was trained on") from exc
    model.hf.eval()
    model.hf.requires_grad_(False)


def _tuner_layers(model: LoadedModel) -> list:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [m for m in model.hf.modules() if isinstance(m, BaseTunerLayer)]


def has_adapter(model: LoadedModel) -> bool:
    return bool(_tuner_layers(model))


@contextlib.contextmanager
def adapter_enabled(model: LoadedModel, enabled: bool) -> Iterator[None]:
    """Run the block with the model's adapter layers on or off; restores them after."""
    layers = _tuner_layers(model)
    before = [not layer.disable_adapters for layer in layers]
    for layer in layers:
        layer.enable_adapters(enabled)
    try:
        yield
    finally:
        for layer, was in zip(layers, before, strict=True):
            layer.enable_adapters(was)
