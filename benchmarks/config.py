"""What a benchmark run measures, and how much of it: the default, `--quick`, and the pair under test."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

EMBEDDED_PAIR = ("gemma-3-270m", "demo")
EMBEDDED_SIBLING = "demo-overfit"
"""Another finetune of the embedded base with the demo's recipe (its null shape): triaged first, it leaves the base
pass and the null in the store, so the demo's triage after it costs what a new finetune of a seen base costs."""
Emit = Callable[[str], None]
"""Where progress lines go (stderr), so `--json` stdout stays one object."""


@dataclass(frozen=True)
class Settings:
    """Sizes of every step. `ratio_n` texts are timed interleaved for difflens vs the floor, the first
    `baseline_n` of them also through the notebook baseline (`baseline_tokens` tokens per text)."""

    base: str = EMBEDDED_PAIR[0]
    ft: str = EMBEDDED_PAIR[1]
    adapter: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    threads: int | None = 1
    quick: bool = False
    k: int = 5
    batch_size: int = 32
    ratio_n: int = 256
    baseline_n: int = 16
    baseline_batch: int = 8
    baseline_tokens: int = 64
    ns: tuple[int, ...] = (256, 1024)
    ks: tuple[int, ...] = (1, 5, 20)
    k_n: int = 64
    batch_sizes: tuple[int, ...] = (1, 8)
    batch_n: int = 16
    patch_positions: int = 2
    steer_prompts: int = 4
    steer_strengths: tuple[float, ...] = (0.0, 1.0, 2.0, 4.0)
    steer_tokens: int = 16
    cold_load: bool = True
    memory_n: int = 32
    round_trips: int = 50
    board_adapters: int = 4
    board_n: int = 256
    trajectory_points: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    trajectory_null: int = 8

    @property
    def embedded(self) -> bool:
        return (self.base, self.ft, self.adapter) == (*EMBEDDED_PAIR, None)

    @property
    def sibling(self) -> str | None:
        """The finetune the triage rows run first on the same base (None: none known for this pair, so the fresh
        triage is also the first on its base)."""
        return EMBEDDED_SIBLING if self.embedded else None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


QUICK: dict[str, Any] = dict(quick=True, ratio_n=64, baseline_n=8, baseline_batch=4, ns=(64, 256), ks=(1, 5),
                             k_n=32, batch_n=8, patch_positions=1, steer_prompts=2, steer_strengths=(0.0, 2.0),
                             steer_tokens=8, cold_load=False, memory_n=16, round_trips=20, board_n=64,
                             trajectory_points=(0.0, 0.5, 1.0), trajectory_null=2)
GPU: dict[str, Any] = dict(ratio_n=1024, baseline_n=256, baseline_batch=32, ns=(256, 1024, 4096, 16384), k_n=1024,
                           batch_sizes=(1, 8, 128, 512), batch_n=1024, patch_positions=5, steer_prompts=8,
                           steer_tokens=32, board_n=4096)


def make_settings(quick: bool, on_gpu: bool, **given: Any) -> Settings:
    """Defaults for the device, shrunk by `quick`, then the caller's choices (None = keep the default)."""
    settings = Settings()
    if on_gpu:
        settings = replace(settings, threads=None, **GPU)
    if quick:
        settings = replace(settings, **QUICK)
    return replace(settings, **{name: value for name, value in given.items() if value is not None})
