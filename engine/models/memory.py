"""Memory plan: how much a pair needs where it will run, checked before anything is loaded.

Sizes come from the weight files (scaled to the target dtype) or, for hub models, from the hub's
safetensors metadata; a plan that cannot fit is refused with the numbers and the ways out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import psutil
import torch

from engine.errors import UserError
from engine.models.device import Placement
from engine.models.specs import ModelSpec

_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}
HEADROOM = 1.15  # activations, CUDA context and allocator slack on top of the weights
GIB = 2**30


def _checkpoint_dir(spec: ModelSpec) -> Path | None:
    if spec.source == "embedded":
        from engine.embedded import converted_dir

        return converted_dir()
    if spec.source in ("local", "gguf"):
        return Path(spec.path) if spec.source == "local" else None
    return None


def weight_bytes(spec: ModelSpec, placement: Placement) -> int | None:
    """Bytes of `spec`'s weights in the target dtype; None when it cannot be known without loading."""
    target = _BYTES.get(placement.dtype_name, 4)
    if spec.source == "gguf":
        return None
    directory = _checkpoint_dir(spec)
    if directory is not None and directory.is_dir():
        files = list(directory.glob("*.safetensors")) or list(directory.glob("*.bin"))
        if not files:
            return None
        config = json.loads((directory / "config.json").read_text()) if (directory / "config.json").exists() else {}
        stored = _BYTES.get(str(config.get("dtype") or config.get("torch_dtype") or "float32"), 4)
        return int(sum(f.stat().st_size for f in files) * target / stored)
    try:
        from huggingface_hub import get_safetensors_metadata

        meta = get_safetensors_metadata(spec.path, revision=spec.revision)
        return int(sum(meta.parameter_count.values()) * target)
    except Exception:  # no hub access, or no safetensors metadata: the plan is unknown, not wrong
        return None


def available_bytes(placement: Placement) -> int:
    if placement.device.startswith("cuda"):
        return sum(torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count()))
    return int(psutil.virtual_memory().available)


@dataclass
class MemoryPlan:
    base: int | None
    ft: int | None
    shared: bool
    sequential: bool
    available: int

    @property
    def needed(self) -> int | None:
        if self.base is None or self.ft is None:
            return None
        weights = self.base if self.shared else (max(self.base, self.ft) if self.sequential else self.base + self.ft)
        return int(weights * HEADROOM)

    def describe(self) -> str:
        if self.needed is None:
            return "memory plan unknown (model sizes not readable before loading)"
        mode = "shared weights + adapter" if self.shared else ("sequential" if self.sequential else "joint")
        return f"{mode}: needs {self.needed / GIB:.1f} GiB, {self.available / GIB:.1f} GiB available"

    def check(self) -> None:
        needed = self.needed
        if needed is None or needed <= self.available:
            return
        ways = ["--dtype bfloat16"]
        if not self.shared and not self.sequential:
            ways.insert(0, f"--sequential (needs {int(max(self.base, self.ft) * HEADROOM) / GIB:.1f} GiB)")  # type: ignore[type-var]
        ways.append("more GPUs (device_map=auto shards across them)")
        raise UserError(f"the pair does not fit: {self.describe()}", "use " + ", or ".join(ways))


def plan_memory(base: ModelSpec, ft: ModelSpec, placement: Placement, sequential: bool) -> MemoryPlan:
    shared = bool(ft.adapter) and base.adapter is None and ft.base == base
    base_bytes = weight_bytes(base, placement)
    ft_bytes = base_bytes if shared else weight_bytes(ft.base, placement)
    return MemoryPlan(base_bytes, ft_bytes, shared, sequential, available_bytes(placement))
