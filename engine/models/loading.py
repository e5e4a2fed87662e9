"""Load a `ModelSpec` into a Hugging Face model + tokenizer, wrapped for nnsight tracing."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch

from engine.embedded import SHIPPED_SAMPLING, embedded_checkpoint
from engine.errors import UserError
from engine.models.adapters import adapter_view
from engine.models.device import Placement
from engine.models.specs import ModelSpec

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass
class LoadedModel:
    """An HF causal LM with its tokenizer and the module paths difflens reads and writes.

    `layers[i]` is decoder layer i (its output is the residual stream after it), `final_norm` and
    `lm_head` make the logit lens. `nn` is the nnsight wrapper of the same module (no copy).
    """

    spec: ModelSpec
    hf: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    placement: Placement
    adapter_name: str | None = None  # the peft adapter this view of shared base weights runs (adapters.py)
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)

    @cached_property
    def layers_path(self) -> str:
        """Dotted path of the decoder-layer ModuleList (e.g. `model.layers`)."""
        n = self.n_layers
        for name, module in self.hf.named_modules():
            if isinstance(module, torch.nn.ModuleList) and len(module) == n and name:
                return name
        raise UserError(f"cannot find the decoder layers of {self.spec.label()}",
                        "use a standard Hugging Face causal LM architecture")

    @property
    def layers(self) -> torch.nn.ModuleList:
        return cast(torch.nn.ModuleList, self.hf.get_submodule(self.layers_path))

    @property
    def final_norm(self) -> torch.nn.Module:
        decoder = self.hf.get_decoder()
        for attr in ("norm", "final_layernorm", "ln_f", "final_layer_norm"):
            if hasattr(decoder, attr):
                return getattr(decoder, attr)
        raise UserError(f"cannot find the final norm of {self.spec.label()}", "use a standard causal LM")

    @property
    def lm_head(self) -> torch.nn.Module:
        return self.hf.get_output_embeddings()

    @property
    def n_layers(self) -> int:
        return int(self.hf.config.get_text_config().num_hidden_layers)

    @property
    def d_model(self) -> int:
        return int(self.hf.config.get_text_config().hidden_size)

    @property
    def remote(self) -> bool | str:
        """nnsight's `remote=` for this model's traces: False runs them here (`RemoteModel` runs them on NDIF)."""
        return False

    @property
    def input_device(self) -> torch.device:
        weight = self.hf.get_input_embeddings().weight
        assert isinstance(weight, torch.Tensor)
        return weight.device

    @cached_property
    def nn(self) -> Any:
        """The nnsight view of `hf` (same parameters, nothing copied)."""
        from nnsight import TransformersModel

        return TransformersModel(self.hf, tokenizer=self.tokenizer)

    def nn_layer(self, index: int) -> Any:
        """The nnsight envoy of decoder layer `index`."""
        envoy = self.nn
        for part in self.layers_path.split("."):
            envoy = getattr(envoy, part)
        return envoy[index]


def _source_and_kwargs(spec: ModelSpec) -> tuple[str, dict[str, Any]]:
    if spec.source == "embedded":
        return str(embedded_checkpoint()), {}
    if spec.source == "gguf":
        path = Path(spec.path)
        return str(path.parent), {"gguf_file": path.name}
    kwargs: dict[str, Any] = {"trust_remote_code": spec.trust_remote_code}
    if spec.revision:
        kwargs["revision"] = spec.revision
    return spec.path, kwargs


def load_model(spec: ModelSpec, placement: Placement) -> LoadedModel:
    """Load `spec` (with its adapter attached in place, if any). Errors become one-line `UserError`s.

    transformers is imported here, not at module level: the engine starts and answers cached results
    without paying its import (seconds), only a model load needs it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source, kwargs = _source_and_kwargs(spec)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        hf = AutoModelForCausalLM.from_pretrained(
            source, dtype=placement.dtype, device_map=placement.hf_device_map, **kwargs)
    except OSError as exc:
        raise UserError(f"cannot load model {spec.label()!r}: {str(exc).splitlines()[0]}",
                        "check the id or path (this machine may have no access to the model hub)") from exc
    except ValueError as exc:
        if "trust_remote_code" in str(exc):
            raise UserError(f"{spec.label()!r} needs custom code from its repository",
                            "pass --trust-remote-code if you trust it") from exc
        raise
    if placement.device_map is None:
        hf.to(placement.device)  # type: ignore[arg-type]  # transformers' `to` wrapper hides torch's signature
    hf.eval()
    hf.requires_grad_(False)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if spec.source == "embedded":
        hf.generation_config.update(**SHIPPED_SAMPLING)
    loaded = LoadedModel(spec=spec.base, hf=hf, tokenizer=tokenizer, placement=placement)
    return adapter_view(loaded, spec.adapter) if spec.adapter else loaded
