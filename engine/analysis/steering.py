"""Steering with a run's mean difference: the vector, calibrated strengths, and cached samples.

The vector at (layer, pos) is the diff's direction scaled to the finetuned model's mean activation norm at
that layer (the reference's convention), so a strength of 1 adds a typical activation's worth of it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np
from jaxtyping import Float
from torch import Tensor

from engine.adl.runs import AdlRun
from engine.errors import UserError
from engine.steering.calibrate import calibrate_grid, calibrate_strength, geometric_grid
from engine.steering.generate import generate_steered
from engine.steering.prompts import calibration_prompts, default_prompts
from store import results

Side = Literal["base", "ft"]
Partial = Callable[[dict[str, Any]], None]


def layer_norm(run: AdlRun, layer: int) -> float:
    """Mean finetuned activation norm at `layer`, over the read positions after the first (position 0's
    outsized vector would otherwise set the scale)."""
    norms = run.ft_norm[run.layer_index(layer)]
    return float(norms[1:].mean() if norms.numel() > 1 else norms.mean())


def steering_vectors(run: AdlRun, layer: int, positions: list[int]) -> Float[Tensor, "pos d_model"]:
    row = run.layer_index(layer)
    diff = run.mean_diff[row, [run.check_position(p) for p in positions]].float()
    norms = diff.norm(dim=-1, keepdim=True)
    if bool((norms == 0).any()):
        raise UserError(f"the mean difference at layer {layer} is zero: there is nothing to steer with",
                        "check that the finetuned model differs from the base model")
    return diff / norms * layer_norm(run, layer)


def steer(run: AdlRun, layer: int, pos: int, strengths: list[float], prompts: list[str] | None = None,
          samples: int = 1, max_new_tokens: int = 64, temperature: float = 0.0, seed: int = 0, side: Side = "ft",
          on_partial: Partial | None = None) -> list[dict[str, Any]]:
    """Steered and unsteered text for every prompt × strength × sample, in one generate call (cached).

    Streams `{"row", "prompt", "strength", "column", "text"}` partials as tokens arrive."""
    prompts = list(prompts or default_prompts())
    if not strengths:
        raise UserError("no steering strength given", "pass --strength S or --strength auto")
    grid = sorted({0.0, *(float(s) for s in strengths)})
    inputs = {"run": run.run_id, "layer": layer, "pos": pos, "strengths": grid, "prompts": prompts,
              "samples": samples, "max_new_tokens": max_new_tokens, "temperature": temperature, "seed": seed,
              "side": side}
    if (hit := results.lookup("steering", inputs)) is not None:
        return hit.meta["samples"]
    vector = steering_vectors(run, layer, [pos])[0]
    rows = [(p, s) for p in prompts for s in grid for _ in range(samples)]
    texts = [""] * len(rows)

    def on_step(step: int, pieces: list[str]) -> None:
        if on_partial is None:
            return
        for row, piece in enumerate(pieces):
            if piece:
                texts[row] += piece
                prompt, strength = rows[row]
                on_partial({"row": row, "prompt": prompt, "strength": strength, "text": texts[row],
                            "column": "unsteered" if strength == 0 else "steered"})

    with run.pair().use(side) as model:
        made = generate_steered(model, vector, layer, prompts, grid, samples=samples, max_new_tokens=max_new_tokens,
                                temperature=temperature, seed=seed, on_step=on_step)
    unsteered = {(s.prompt, s.sample): s.text for s in made if s.strength == 0}
    out = [{"prompt": s.prompt, "strength": s.strength, "sample": s.sample, "steered": s.text,
            "unsteered": unsteered[(s.prompt, s.sample)]} for s in made if s.strength != 0]
    results.save("steering", inputs, {"strengths": np.asarray(grid, dtype=np.float32)}, {"samples": out})
    return out


def calibrate(run: AdlRun, layer: int, positions: list[int], method: str = "grid", max_strength: float = 8.0,
              grid_size: int = 8, samples: int = 4, max_new_tokens: int = 40, temperature: float = 1.2,
              threshold: float = 0.75, seed: int = 0, side: Side = "ft",
              judge: Callable[[list[Any]], list[bool]] | None = None) -> list[dict[str, Any]]:
    """Largest coherent strength per position (cached). `grid`: all positions in one generate call;
    `bisect`: the reference's 12-step bisection per position (slower, finer)."""
    if method not in ("grid", "bisect"):
        raise UserError(f"unknown calibration method {method!r}", "pass grid or bisect")
    prompts = calibration_prompts()
    inputs = {"run": run.run_id, "layer": layer, "positions": positions, "method": method, "max": max_strength,
              "grid": grid_size, "samples": samples, "max_new_tokens": max_new_tokens, "temperature": temperature,
              "threshold": threshold, "seed": seed, "side": side, "judge": "llm" if judge else "perplexity"}
    if (hit := results.lookup("calibration", inputs)) is not None:
        return hit.meta["positions"]
    vectors = steering_vectors(run, layer, positions)
    with run.pair().use(side) as model:
        if method == "grid":
            found = calibrate_grid(model, vectors, layer, geometric_grid(max_strength, grid_size), prompts,
                                   judge=judge, samples=samples, temperature=temperature, threshold=threshold,
                                   max_new_tokens=max_new_tokens, seed=seed)
            out = [{"pos": p, "strength": c.strength, "coherence": c.coherence, "examples": c.examples}
                   for p, c in zip(positions, found, strict=True)]
        else:
            out = []
            for p, vector in zip(positions, vectors, strict=True):
                c = calibrate_strength(model, vector, layer, prompts, judge=judge, max_strength=max_strength,
                                       samples=samples, temperature=temperature, threshold=threshold,
                                       max_new_tokens=max_new_tokens, seed=seed)
                out.append({"pos": p, "strength": c.strength,
                            "coherence": [(s.strength, s.coherence) for s in c.steps], "examples": []})
    results.save("calibration", inputs, {"strengths": np.asarray([o["strength"] for o in out], np.float32)},
                 {"positions": out})
    return out

