"""Device and dtype choice: `auto` means CUDA with bf16 where present, else CPU with fp32."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import torch

from engine.errors import UserError

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
           "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


@dataclass(frozen=True)
class Placement:
    """Where and in what precision a model runs; `device_map` is set for multi-GPU sharding (a named
    strategy or a JSON module→device map); `backend` "ndif" runs the model's traces on NDIF."""

    device: str
    dtype: torch.dtype
    device_map: str | None = None
    backend: str = "local"

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    @property
    def hf_device_map(self) -> str | dict[str, Any] | None:
        """`device_map` as `from_pretrained` takes it."""
        if self.device_map is not None and self.device_map.startswith("{"):
            return json.loads(self.device_map)
        return self.device_map


def resolve_placement(device: str = "auto", dtype: str = "auto", device_map: str | None = None,
                      backend: str = "local") -> Placement:
    if backend == "ndif":  # the weights stay on the server; what comes back is float32 on this CPU
        return Placement(device="cpu", dtype=torch.float32, backend="ndif")
    if backend != "local":
        raise UserError(f"unknown backend {backend!r}", "pass local or ndif")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {device!r} requested but no CUDA GPU is visible", "pass --device cpu")
    if device not in ("cpu", "cuda", "mps") and not device.startswith("cuda:"):
        raise UserError(f"unknown device {device!r}", "pass auto, cpu, cuda or cuda:N")
    if dtype == "auto":
        torch_dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    elif dtype in _DTYPES:
        torch_dtype = _DTYPES[dtype]
    else:
        raise UserError(f"unknown dtype {dtype!r}", "pass auto, float32, bfloat16 or float16")
    if device_map is None and device == "cuda" and torch.cuda.device_count() > 1:
        device_map = "auto"
    return Placement(device=device, dtype=torch_dtype, device_map=device_map)
