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

from engine.embedded import converted_dir
from engine.errors import UserError
from engine.models.device import Placement
from engine.models.specs import ModelSpec

_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}
HEADROOM = 1.15  # activations, CUDA context and allocator slack on top of the weights
GIB = 2**30


def _checkpoint_dir(spec: ModelSpec) -> Path | None:
    if spec.source == "embedded":
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


def devices_of(placement: Placement) -> tuple[str, ...]:
    """The devices a model's weights will occupy: every GPU for a named device_map strategy, the map's
    own devices for a JSON map, else the one device."""
    mapped = placement.hf_device_map
    if isinstance(mapped, dict):
        named = {f"cuda:{v}" if isinstance(v, int) else str(v) for v in mapped.values()}
        return tuple(sorted(named - {"disk"})) or ("cpu",)
    if placement.device.startswith("cuda") and (mapped is not None or placement.device == "cuda"):
        count = torch.cuda.device_count()
        return tuple(f"cuda:{i}" for i in range(count)) if mapped is not None else ("cuda:0",)
    return (placement.device,)


def device_free(device: str) -> int:
    """Free bytes on one device (host RAM for the CPU)."""
    if device.startswith("cuda"):
        return int(torch.cuda.mem_get_info(int(device.partition(":")[2] or 0))[0])
    return int(psutil.virtual_memory().available)


def available_bytes(placement: Placement) -> int:
    return sum(device_free(device) for device in devices_of(placement))


@dataclass(frozen=True)
class Pool:
    """One side's weights on its own devices (when base and ft are placed apart)."""

    side: str
    devices: tuple[str, ...]
    weights: int | None
    available: int

    @property
    def needed(self) -> int | None:
        return None if self.weights is None else int(self.weights * HEADROOM)

    def describe(self) -> str:
        where = "+".join(self.devices)
        if self.needed is None:
            return f"{self.side} on {where}: size unknown, {self.available / GIB:.1f} GiB free"
        return f"{self.side} on {where} needs {self.needed / GIB:.1f} GiB, {self.available / GIB:.1f} GiB free"


@dataclass
class MemoryPlan:
    base: int | None
    ft: int | None
    shared: bool
    sequential: bool
    available: int
    pools: tuple[Pool, ...] = ()  # base and ft placed on different devices: each must fit its own

    @property
    def needed(self) -> int | None:
        if self.base is None or self.ft is None:
            return None
        weights = self.base if self.shared else (max(self.base, self.ft) if self.sequential else self.base + self.ft)
        return int(weights * HEADROOM)

    def describe(self) -> str:
        if self.pools:
            return "split: " + "; ".join(pool.describe() for pool in self.pools)
        if self.needed is None:
            return "memory plan unknown (model sizes not readable before loading)"
        mode = "one set of weights for both sides" if self.shared else ("sequential" if self.sequential else "joint")
        return f"{mode}: needs {self.needed / GIB:.1f} GiB, {self.available / GIB:.1f} GiB available"

    def check(self) -> None:
        if self.pools:
            self._check_pools()
            return
        needed = self.needed
        if needed is None or needed <= self.available:
            return
        assert self.base is not None and self.ft is not None  # `needed` is known only when both sizes are
        ways = ["--dtype bfloat16"]
        if not self.shared and not self.sequential:
            ways.insert(0, f"--sequential (needs {int(max(self.base, self.ft) * HEADROOM) / GIB:.1f} GiB)")
        ways.append("more GPUs (device_map=auto shards across them)")
        raise UserError(f"the pair does not fit: {self.describe()}", "use " + ", or ".join(ways))

    def _check_pools(self) -> None:
        """Each side must fit its devices; sides sharing a device must also fit it together."""
        over = [pool for pool in self.pools if pool.needed is not None and pool.needed > pool.available]
        needed = self.needed
        overlap = set(self.pools[0].devices) & set(self.pools[1].devices)
        together = bool(overlap) and needed is not None and not self.sequential and needed > self.available
        if not over and not together:
            return
        problem = over[0].describe() if over else (
            f"both sides share {'+'.join(sorted(overlap))}: need {(needed or 0) / GIB:.1f} GiB, "
            f"{self.available / GIB:.1f} GiB free")
        raise UserError(f"the pair does not fit: {problem}",
                        "use --device-map balanced (shard each model over every GPU), another --place, "
                        "--dtype bfloat16, or --sequential")


def plan_memory(base: ModelSpec, ft: ModelSpec, placement: Placement, sequential: bool,
                ft_placement: Placement | None = None) -> MemoryPlan:
    """The plan for base on `placement` and ft on `ft_placement` (default: the same devices)."""
    same_model = ft == base and ft_placement in (None, placement)  # the cache loads it once
    shared = same_model or (bool(ft.adapter) and base.adapter is None and ft.base == base)
    base_bytes = weight_bytes(base, placement)
    ft_bytes = base_bytes if shared else weight_bytes(ft.base, ft_placement or placement)
    base_devices, ft_devices = devices_of(placement), devices_of(ft_placement or placement)
    if shared or base_devices == ft_devices:
        return MemoryPlan(base_bytes, ft_bytes, shared, sequential, available_bytes(placement))
    union = sorted(set(base_devices) | set(ft_devices))
    pools = (Pool("base", base_devices, base_bytes, sum(device_free(d) for d in base_devices)),
             Pool("ft", ft_devices, ft_bytes, sum(device_free(d) for d in ft_devices)))
    return MemoryPlan(base_bytes, ft_bytes, shared, sequential, sum(device_free(d) for d in union), pools)
