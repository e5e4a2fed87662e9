"""Where each side of a pair runs: `--device-map` (one strategy or map for both, or one per side) and
`--place base=cuda:0,ft=cuda:1` (each model on its own device).

Why per side: two 30B models do not fit one GPU each way, but fit as base on GPUs 0–1 and ft on 2–3, or
one per GPU. The diff is still accumulated on one device (the sums live on the CPU).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from engine.errors import UserError
from engine.models.device import Placement, resolve_placement

STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")
SIDES = ("base", "ft")


@dataclass(frozen=True)
class PairPlacement:
    """One `Placement` per side; equal when both sides share devices (the common case)."""

    base: Placement
    ft: Placement


def _map_text(value: object, what: str) -> str:
    """A named strategy as is, a module→device map as canonical JSON (placements are hashed)."""
    if isinstance(value, str) and value in STRATEGIES:
        return value
    if isinstance(value, dict) and value and all(
            isinstance(k, str) and isinstance(v, (int, str)) and not isinstance(v, bool) for k, v in value.items()):
        return json.dumps(value, sort_keys=True)
    raise UserError(f"cannot read {what} {value!r}",
                    f"pass one of {', '.join(STRATEGIES)} or a JSON map like "
                    '\'{"model.embed_tokens": 0, "model.layers": 1, "lm_head": 1}\'')


def parse_device_map(text: str | None) -> dict[str, str | None]:
    """`auto` | `balanced` | `sequential` | a JSON map (both sides), or per side: `base=balanced,ft=auto`
    or `{"base": "auto", "ft": {...}}`."""
    if not text:
        return {"base": None, "ft": None}
    text = text.strip()
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(f"--device-map is not valid JSON: {exc.msg}", "quote the map in single quotes") from exc
        if isinstance(value, dict) and value and set(value) <= set(SIDES):
            return {side: _map_text(value[side], f"--device-map {side}") if side in value else None
                    for side in SIDES}
        shared = _map_text(value, "--device-map")
        return {"base": shared, "ft": shared}
    if "=" in text:
        per_side = _assignments(text, "--device-map")
        return {side: _map_text(per_side[side], f"--device-map {side}") if side in per_side else None
                for side in SIDES}
    shared = _map_text(text, "--device-map")
    return {"base": shared, "ft": shared}


def parse_place(text: str | None) -> dict[str, str | None]:
    """`base=cuda:0,ft=cuda:1` → the device of each side (a side left out uses --device)."""
    if not text:
        return {"base": None, "ft": None}
    per_side = _assignments(text, "--place")
    return {side: per_side.get(side) for side in SIDES}


def _assignments(text: str, option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in text.split(","):
        side, sep, value = part.strip().partition("=")
        if not sep or side not in SIDES or not value or side in out:
            raise UserError(f"cannot read {option} {text!r}", f"write e.g. {option} base=cuda:0,ft=cuda:1")
        out[side] = value.strip()
    return out


def resolve_pair_placement(device: str = "auto", dtype: str = "auto", device_map: str | None = None,
                           place: str | None = None, backend: str = "local") -> PairPlacement:
    """Both sides' placements from the CLI options (NDIF ignores devices: the server places its models)."""
    if backend == "ndif":
        remote = resolve_placement(backend="ndif")
        return PairPlacement(remote, remote)
    maps, devices = parse_device_map(device_map), parse_place(place)
    sides = {side: resolve_placement(devices[side] or device, dtype, maps[side], backend) for side in SIDES}
    for side, placement in sides.items():
        if placement.device_map and placement.device == "cpu" and maps[side] in STRATEGIES[1:]:
            raise UserError(f"--device-map {maps[side]} for {side} needs GPUs, but it runs on the CPU",
                            "pass --device cuda, or drop --device-map")
    return PairPlacement(sides["base"], sides["ft"])
