"""The steps of a trajectory: which finetunes of one base it triages, in order, each as an ADL request.

Three series: an organism's training checkpoints (step 0 the base, then each kept checkpoint, then the
organism), the weight interpolation base + t·(ft − base) of a LoRA finetune (the adapter's delta scaled by t),
or hub revisions of one model (`ID@REV1,REV2,…`, after the base). Every step shares the base, corpus, n, k,
seed, layers and dtype of the request, so every step reads the same base pass.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from engine.adl.request import AdlRequest
from engine.errors import UserError
from engine.models.scaled_adapters import check_fraction, scalable_config, scaled_adapter
from engine.models.specs import ModelSpec
from engine.organisms.checkpoints import list_checkpoints
from engine.protocol.methods import Trajectory

Series = Literal["checkpoints", "interpolation", "revisions"]
AXIS = {"checkpoints": "training step", "interpolation": "t", "revisions": "revision"}


@dataclass(frozen=True)
class Step:
    """One finetune of the series: `x` its place on the plot's axis, `label` how tables name it."""

    label: str
    x: float
    request: AdlRequest


def series_of(params: Trajectory) -> Series:
    """Which series the params name (exactly one)."""
    offered: tuple[tuple[Series, bool], ...] = (("checkpoints", params.checkpoints),
                                                ("interpolation", params.interpolate is not None),
                                                ("revisions", "," in params.ft.partition("@")[2]))
    named = [series for series, on in offered if on]
    if len(named) != 1:
        raise UserError("a trajectory needs exactly one series" + (f", got {' and '.join(named)}" if named else ""),
                        "pass --checkpoints, or --interpolate 0,0.25,0.5,0.75,1, or --ft ID@REV1,REV2")
    return named[0]


def trajectory_steps(params: Trajectory, request: AdlRequest) -> tuple[Series, list[Step]]:
    """The series and its steps in order; bad input (no checkpoints, t outside [0, 1]) is refused here,
    before anything loads."""
    series = series_of(params)
    base = replace(request, ft=request.base, adapter=None)
    if series == "checkpoints":
        return series, _checkpoints(request, base)
    if series == "interpolation":
        return series, _interpolation(request, base, params.interpolate or [])
    return series, _revisions(request, base)


def _local_adapter(spec: ModelSpec, request: AdlRequest, what: str) -> Path:
    if not spec.adapter or not Path(spec.adapter).is_dir():
        raise UserError(f"{spec.label()} is not a local LoRA adapter, so it has no {what}",
                        "pass an organism or adapter folder as --ft (e.g. --ft demo)")
    if spec.base != request.base_spec:
        raise UserError(f"{spec.label()} is an adapter of {spec.base.label()}, not of {request.base_spec.label()}",
                        f"pass --base {spec.base.label()}")
    return Path(spec.adapter)


def _checkpoints(request: AdlRequest, base: AdlRequest) -> list[Step]:
    adapter = _local_adapter(request.ft_spec, request, "training checkpoints")
    kept = list_checkpoints(adapter)
    if not kept:
        raise UserError(f"{adapter.name} has no training checkpoints",
                        "train it with `difflens organism train --checkpoints N` (or pass --interpolate instead)")
    final = _final_step(adapter, kept[-1][0])
    return ([Step("step 0 (base)", 0, base)]
            + [Step(f"step {step}", step, replace(base, adapter=str(path))) for step, path in kept]
            + [Step(f"step {final} (final)", final, request)])


def _final_step(adapter: Path, last_kept: int) -> int:
    """The organism's last training step, as its card records it (else one past the last checkpoint)."""
    card = adapter / "organism.json"
    steps = json.loads(card.read_text()).get("settings", {}).get("steps") if card.is_file() else None
    return int(steps) if isinstance(steps, int) and steps > last_kept else last_kept + 1


def _interpolation(request: AdlRequest, base: AdlRequest, points: list[float]) -> list[Step]:
    if not points:
        raise UserError("--interpolate needs at least one point t", "pass e.g. --interpolate 0,0.25,0.5,0.75,1")
    for t in points:
        check_fraction(t)
    adapter = _local_adapter(request.ft_spec, request, "weight interpolation")
    scalable_config(adapter)
    steps = []
    for t in sorted(set(points)):
        step = base if t == 0 else request if t == 1 else replace(base, adapter=str(scaled_adapter(adapter, t)))
        steps.append(Step(f"t = {t:g}", t, step))
    return steps


def _revisions(request: AdlRequest, base: AdlRequest) -> list[Step]:
    name, _, listed = request.ft.partition("@")
    revisions = [r.strip() for r in listed.split(",")]
    if not name or any(not r for r in revisions) or len(set(revisions)) != len(revisions):
        raise UserError(f"cannot read the revisions in {request.ft!r}",
                        "pass --ft ID@REV1,REV2,… with distinct, non-empty revisions")
    return [Step("base", 0, base)] + [Step(f"@{rev}", index, replace(request, ft=f"{name}@{rev}"))
                                      for index, rev in enumerate(revisions, 1)]
