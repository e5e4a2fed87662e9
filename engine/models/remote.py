"""Models on NDIF: an nnsight `TransformersModel(repo_id)` built on the meta device (config + tokenizer,
no weights here), whose traces run on NDIF with `remote=True`.

It is a `LoadedModel`, so every trace in the engine runs on it unchanged: the trace code passes
`remote=model.remote` and reads only envoys and tensors inside its block (what NDIF can rebuild).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from engine.embedded import EMBEDDED_NAME
from engine.errors import UserError
from engine.models.device import Placement, resolve_placement
from engine.models.loading import LoadedModel
from engine.models.specs import ModelSpec
from engine.ndif.access import check_served, execution_target, require_api_key


@dataclass
class RemoteModel(LoadedModel):
    """`hf` is the meta module (shapes, config, module paths); `root` the nnsight model that names the
    checkpoint to NDIF; `target` is nnsight's `remote=` (True, or "local" for the simulation)."""

    root: Any = None
    target: bool | str = True

    @property
    def nn(self) -> Any:  # type: ignore[override]
        return self.root

    @property
    def remote(self) -> bool | str:
        return self.target

    @property
    def input_device(self) -> torch.device:
        """Inputs are built here on the CPU and shipped with the request."""
        return torch.device("cpu")


def refuse_unservable(spec: ModelSpec, simulated: bool) -> None:
    """NDIF runs Hugging Face hub checkpoints (and hub adapters via peft=): refuse anything local."""
    if spec.source == "embedded":
        raise UserError(f"{EMBEDDED_NAME!r} is this install's local copy, which NDIF cannot run",
                        "pass its hub id (google/gemma-3-270m) with --backend ndif, or use --backend local")
    if spec.source in ("local", "gguf") and not simulated:
        raise UserError(f"{spec.label()!r} is a local checkpoint; NDIF serves hub models only",
                        "pass a Hugging Face id that `difflens ndif models` lists, or use --backend local")
    if spec.adapter and Path(spec.adapter).exists() and not simulated:
        raise UserError(f"adapter {spec.adapter!r} is a local directory; NDIF applies adapters by hub id",
                        "push the adapter to the hub and pass --adapter ORG/NAME, or use --backend local")


def load_remote_model(spec: ModelSpec) -> RemoteModel:
    """The meta model of `spec` for NDIF (its tokenizer and config fetched from the hub, nothing else)."""
    from nnsight import TransformersModel
    from transformers import AutoTokenizer, GenerationConfig

    target = execution_target()
    refuse_unservable(spec, simulated=target == "local")
    if target is True:
        require_api_key()
        check_served(spec.path, spec.revision)
    extra: dict[str, Any] = {"trust_remote_code": True} if spec.trust_remote_code else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(spec.path, revision=spec.revision, **extra)
        root = TransformersModel(spec.path, revision=spec.revision, task="text-generation", tokenizer=tokenizer,
                                 peft=spec.adapter, **extra)
        if target is True:
            root.to_model_key()  # resolves the hub id now, so a hub failure is not mistaken for NDIF's
    except OSError as exc:
        raise UserError(f"cannot read {spec.label()!r} from the hub: {str(exc).splitlines()[0][:200]}",
                        "check the id (and network access to huggingface.co)") from exc
    hf = root._module
    with contextlib.suppress(OSError, ValueError):  # without one, the config's own defaults (eos) stand
        hf.generation_config = GenerationConfig.from_pretrained(
            spec.path, revision=spec.revision)  # type: ignore[arg-type]  # None means the default branch
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return RemoteModel(spec=spec, hf=hf, tokenizer=tokenizer, placement=ndif_placement(), root=root,
                       target=target)


def ndif_placement() -> Placement:
    return resolve_placement(backend="ndif")
