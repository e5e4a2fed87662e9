"""The nnsight envoy of any module of a loaded model (final norm, unembedding), found by its path."""

from __future__ import annotations

from typing import Any

import torch

from engine.errors import UserError
from engine.models.loading import LoadedModel


def envoy_of(model: LoadedModel, module: torch.nn.Module) -> Any:
    """The envoy wrapping `module` in `model.nn` (the path is the module's name in `model.hf`)."""
    path = next((name for name, m in model.hf.named_modules() if m is module), None)
    if path is None:
        raise UserError(f"{type(module).__name__} is not part of {model.spec.label()}", "use a standard causal LM")
    envoy = model.nn
    for part in filter(None, path.split(".")):
        envoy = envoy[int(part)] if part.isdigit() else getattr(envoy, part)
    return envoy
