"""Steering with a run's mean difference: the vector, calibrated strengths, and cached samples.

The vector at (layer, pos) is the diff's direction scaled to the finetuned model's mean activation norm at
that layer (the reference's convention), so a strength of 1 adds a typical activation's worth of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from engine.adl.rescale_norm import layer_norm, norm_key
from engine.adl.runs import AdlRun
from engine.errors import UserError
from engine.judges.judge_config import Judge
from engine.protocol.methods import (
    DEFAULT_TEMPERATURE,
    PAPER_CALIBRATION_TEMPERATURE,
    PAPER_SAMPLE_TEMPERATURE,
    REPORT_PROMPTS,
    REPORT_STEERING,
    Protocol,
    Side,
)
from engine.protocol.params import choices
from engine.steering.calibrate import (
    GridCalibration,
    calibrate_grid,
    calibrate_reference,
    calibrate_strength,
    geometric_grid,
)
from engine.steering.coherence import CoherenceJudge, llm_coherence_judge, reference_coherence_judge
from engine.steering.generate import SAMPLING_RULE, generate_rows
from engine.steering.steering_prompts import calibration_prompts, default_prompts, reference_prompts
from store import results

Partial = Callable[[dict[str, Any]], None]
GRID_SEARCH = "bisect-grid"
"""How the default grid is searched (engine/steering/calibrate.py `calibrate_grid`), in its cache key: it was
"until-incoherent" (walk up from the smallest strength), whose calibrations drew other texts."""
PROTOCOLS = choices(Protocol)


def steering_vectors(run: AdlRun, layer: int, positions: list[int]) -> Float[Tensor, "pos d_model"]:
    row = run.layer_index(layer)
    diff = run.mean_diff[row, [run.check_position(p) for p in positions]].float()
    norms = diff.norm(dim=-1, keepdim=True)
    if bool((norms == 0).any()):
        raise UserError(f"the mean difference at layer {layer} is zero: there is nothing to steer with",
                        "check that the finetuned model differs from the base model")
    return diff / norms * layer_norm(run, layer)


@dataclass(frozen=True)
class Direction:
    """A vector to steer with instead of the run's mean diff at the cell (e.g. a principal component of the
    per-text differences), and what names it in the steering cache key."""

    vector: Float[Tensor, " d_model"]
    key: dict[str, Any]


def direction_vectors(run: AdlRun, layer: int, direction: Direction, count: int) -> Float[Tensor, "pos d_model"]:
    """`direction` scaled like the mean diff's steering vectors (to the layer's finetuned norm), `count` times."""
    vector = direction.vector.float()
    norm = vector.norm()
    if float(norm) == 0:
        raise UserError("the direction to steer with is zero", "pick another component")
    return (vector / norm * layer_norm(run, layer)).expand(count, -1)


def steer_cells(run: AdlRun, layer: int, cells: list[tuple[int, float]], prompts: list[str] | None = None,
                samples: int = 1, max_new_tokens: int = 64, temperature: float = 0.0, seed: int = 0,
                side: Side = "ft", on_partial: Partial | None = None, backend: str | None = None,
                direction: Direction | None = None) -> dict[tuple[int, float], list[dict[str, Any]]]:
    """Steered text for every (position, strength) cell × prompt × sample, beside the unsteered text, in ONE
    generate call (the unsteered rows are shared by all cells; NDIF splits it into bounded requests). Cached per
    cell, so one cell of a report (or the calibration's own samples, `file_samples`) answers a single steering;
    only the cells not cached are generated. Streams `{"row", "line", "pos", "prompt", "strength", "column",
    "text"}` partials as tokens arrive (`line`: the sample's index in its cell, so a steered text and its
    unsteered twin share a line). `direction` replaces the mean diff as the vector (its key joins the cache key)."""
    prompts = list(prompts or default_prompts())
    asked = sorted({(int(p), float(s)) for p, s in cells if s != 0})
    if not asked:
        raise UserError("no non-zero steering strength given", "pass --strength S or --strength auto")
    inputs = steering_inputs(run, layer, prompts, samples, max_new_tokens, temperature, seed, side, backend,
                             direction)
    found = {cell: hit.meta["cells"][0]["samples"] for cell in asked
             if (hit := results.lookup("steering", {**inputs, "cells": [cell]})) is not None}
    cells = [cell for cell in asked if cell not in found]
    if not cells:
        return found
    positions = sorted({p for p, _ in cells})
    vectors = (steering_vectors(run, layer, positions) if direction is None
               else direction_vectors(run, layer, direction, len(positions)))
    index = {p: i for i, p in enumerate(sorted({p for p, _ in cells}))}
    plain = [(-1, 0.0, prompt, n) for prompt in prompts for n in range(samples)]
    steered = [(pos, strength, prompt, n) for pos, strength in cells for prompt in prompts for n in range(samples)]
    known = results.lookup("unsteered", _unsteered_inputs(inputs))  # one unsteered column whatever the cell or α
    rows = steered if known is not None else plain + steered
    per_cell = len(plain)
    if known is not None and on_partial is not None:
        for line, ((_, _, prompt, _), text) in enumerate(zip(plain, known.meta["texts"], strict=True)):
            on_partial({"row": line, "line": line, "pos": -1, "prompt": prompt, "strength": 0.0, "text": text,
                        "column": "unsteered"})
    addends = torch.stack([torch.zeros(vectors.shape[1]) if pos < 0 else vectors[index[pos]] * strength
                           for pos, strength, _, _ in rows])
    texts = [""] * len(rows)

    def on_step(step: int, pieces: list[str]) -> None:
        if on_partial is None:
            return
        for row, piece in enumerate(pieces):
            if piece:
                texts[row] += piece
                pos, strength, prompt, _ = rows[row]
                on_partial({"row": row, "line": row % per_cell, "pos": pos, "prompt": prompt, "strength": strength,
                            "text": texts[row], "column": "unsteered" if pos < 0 else "steered"})

    with run.pair(backend).use(side) as model:
        made, _, _ = generate_rows(model, layer, [r[2] for r in rows], addends, max_new_tokens, temperature, seed,
                                   on_step=on_step)
    if known is None:
        unsteered, made = made[:per_cell], made[per_cell:]
        _save_unsteered(inputs, unsteered)
    else:
        unsteered = known.meta["texts"]
    for number, cell in enumerate(cells):
        found[cell] = [{"prompt": prompt, "strength": cell[1], "sample": n, "steered": text, "unsteered": plain_text}
                       for (_, _, prompt, n), text, plain_text in
                       zip(plain, made[per_cell * number: per_cell * (number + 1)], unsteered, strict=True)]
        _save_cell(inputs, cell, found[cell])
    return {cell: found[cell] for cell in asked}


def steering_inputs(run: AdlRun, layer: int, prompts: list[str], samples: int, max_new_tokens: int,
                    temperature: float, seed: int, side: Side, backend: str | None = None,
                    direction: Direction | None = None) -> dict[str, Any]:
    """What steering samples at `layer` depend on besides the cell (the cache key less its `cells`)."""
    inputs = {"run": run.run_id, "layer": layer, "prompts": prompts, "samples": samples,
              "max_new_tokens": max_new_tokens, "temperature": temperature, "seed": seed, "side": side}
    backend = backend or run.request.backend
    inputs |= {"backend": backend} if backend != "local" else {}
    inputs |= {"sampling": SAMPLING_RULE} if temperature > 0 else {}
    inputs |= {"direction": direction.key} if direction is not None else {}
    inputs |= norm_key(run)
    return inputs


def _unsteered_inputs(inputs: dict[str, Any]) -> dict[str, Any]:
    """Unsteered text depends on neither the layer nor the vector (nor its norm): the steering key less those."""
    return {k: v for k, v in inputs.items() if k not in ("layer", "direction", "norm")}


def _save_unsteered(inputs: dict[str, Any], texts: list[str]) -> None:
    """The unsteered column of these settings, reused by every later steering with them (drawn once)."""
    results.save("unsteered", _unsteered_inputs(inputs), {"count": np.asarray([len(texts)], dtype=np.int64)},
                 {"texts": texts})


def _save_cell(inputs: dict[str, Any], cell: tuple[int, float], made: list[dict[str, Any]]) -> None:
    """One cell's samples under the key a request for that cell alone has."""
    pos, strength = cell
    results.save("steering", {**inputs, "cells": [cell]}, {"strengths": np.asarray([strength], dtype=np.float32)},
                 {"cells": [{"pos": pos, "strength": strength, "samples": made}]})


def steer(run: AdlRun, layer: int, pos: int, strengths: list[float], prompts: list[str] | None = None,
          samples: int = 1, max_new_tokens: int = 64, temperature: float = 0.0, seed: int = 0, side: Side = "ft",
          on_partial: Partial | None = None, backend: str | None = None,
          direction: Direction | None = None) -> list[dict[str, Any]]:
    """One position at several strengths (see `steer_cells`); samples in prompt, strength order."""
    table = steer_cells(run, layer, [(pos, s) for s in strengths], prompts, samples, max_new_tokens, temperature,
                        seed, side, on_partial, backend, direction)
    return [sample for cell in sorted(table) for sample in table[cell]]

@dataclass(frozen=True)
class CalibrationSettings:
    """How strengths are calibrated. The default draws the report's steering samples (`REPORT_STEERING`: its
    prompts, samples, length and temperature) at each strength it tries, so those at the chosen strength are the
    report's and the workbench's steering samples (`calibrate` files them under the steering cache key);
    `for_device("cpu")` trims the grid. `protocol="paper"` is the reference's search instead (see `paper`).
    `prompts` None = the first `n_prompts` default prompts; `follow_steps` set = the reference's per-prompt search
    (later prompts bisect [0, follow_span·t₁]); `grader` the LLM coherence grader's prompt (difflens's or the
    reference's, with worked examples and a retry at T = 0); `leave_out_ungraded` = an ungraded sample leaves the
    coherence share instead of counting as incoherent."""

    method: str = "grid"
    max_strength: float = 4.0
    grid_size: int = 8
    n_prompts: int = REPORT_PROMPTS
    samples: int = REPORT_STEERING.n_samples
    max_new_tokens: int = REPORT_STEERING.max_new_tokens
    temperature: float = REPORT_STEERING.temperature
    threshold: float = 0.75
    protocol: str = "default"
    steps: int = 12
    prompts: tuple[str, ...] | None = None
    follow_steps: int | None = None
    follow_span: float = 2.0
    grader: Literal["difflens", "reference"] = "difflens"
    leave_out_ungraded: bool = False

    @classmethod
    def paper(cls) -> CalibrationSettings:
        """The reference (`find_steering_threshold`): its three prompts, the first bisected on [0, 100] in 12
        steps, the other two in 6 steps on [0, 2·t₁]; 10 samples of 128 tokens at T = 1.2 per step, pass at
        >= 75 % coherent by its LLM grader, UNKNOWN left out; the strength is the mean over the prompts."""
        prompts = reference_prompts().calibration
        return cls(method="bisect", max_strength=100.0, n_prompts=len(prompts), samples=10, max_new_tokens=128,
                   temperature=PAPER_CALIBRATION_TEMPERATURE, threshold=0.75, protocol="paper", steps=12,
                   prompts=prompts, follow_steps=6, follow_span=2.0, grader="reference", leave_out_ungraded=True)

    def calibration_prompts(self) -> list[str]:
        return list(self.prompts) if self.prompts is not None else calibration_prompts(self.n_prompts)

    def search_key(self) -> dict[str, Any]:
        """What the cache key adds beyond the default search (nothing for the default, so its caches hold)."""
        if self == replace(self, steps=12, prompts=None, follow_steps=None, follow_span=2.0, grader="difflens",
                           leave_out_ungraded=False):
            return {}
        return {"steps": self.steps, "prompts": list(self.calibration_prompts()), "follow_steps": self.follow_steps,
                "follow_span": self.follow_span, "grader": self.grader, "leave_out_ungraded": self.leave_out_ungraded}

    @property
    def sample_temperature(self) -> float:
        """The temperature of the steering samples made at the calibrated strengths under this protocol."""
        return PAPER_SAMPLE_TEMPERATURE if self.protocol == "paper" else DEFAULT_TEMPERATURE

    @classmethod
    def for_device(cls, device: str, protocol: str | None = None, **overrides: Any) -> CalibrationSettings:
        given = {k: v for k, v in overrides.items() if v is not None}
        if protocol not in (None, *PROTOCOLS):
            raise UserError(f"unknown calibration protocol {protocol!r}", "pass --protocol default or paper")
        if protocol == "paper":
            if given:
                raise UserError(f"--protocol paper fixes the search, so {', '.join(sorted(given))} cannot be set",
                                "drop those options, or use the default protocol")
            return cls.paper()
        base = cls() if device.startswith("cuda") else cls(grid_size=7)
        return replace(base, **given)


def check_protocol(settings: CalibrationSettings, judge: Judge) -> None:
    """The paper's protocol is defined by its LLM coherence judge: refuse it with the offline stand-in."""
    if settings.protocol == "paper" and judge.offline:
        raise UserError("--protocol paper needs an LLM judge for steering coherence",
                        "pass --judge openai:MODEL (or anthropic:MODEL, local:SPEC), or set DIFFLENS_JUDGE")


def coherence_grader(settings: CalibrationSettings, judge: Judge) -> CoherenceJudge | None:
    """The settings' LLM coherence grader over the judge's endpoint (None offline: the perplexity judge)."""
    if judge.offline:
        return None
    if settings.grader == "reference":
        return reference_coherence_judge(judge.complete, judge.complete_cold)
    return llm_coherence_judge(judge.complete)


def calibration_inputs(run: AdlRun, layer: int, positions: list[int], s: CalibrationSettings, seed: int, side: Side,
                       judge: Judge) -> dict[str, Any]:
    """The cache key of a calibration (the judge and the protocol included)."""
    inputs = {"run": run.run_id, "layer": layer, "positions": positions, "method": s.method, "max": s.max_strength,
              "grid": s.grid_size, "samples": s.samples, "max_new_tokens": s.max_new_tokens,
              "temperature": s.temperature, "threshold": s.threshold, "seed": seed, "side": side,
              "judge": "perplexity" if judge.offline else judge.identity}
    inputs |= {"protocol": s.protocol} if s.protocol != "default" else {}
    inputs |= norm_key(run)
    inputs |= {"sampling": SAMPLING_RULE} if s.temperature > 0 else {}
    inputs |= s.search_key()
    inputs |= {"rounds": GRID_SEARCH} if s.method == "grid" else {}  # the grid's search (another draws other texts)
    return inputs


def cached_calibration(run: AdlRun, layer: int, judge: Judge) -> list[dict[str, Any]] | None:
    """The default calibration of every position at `layer` (a triage's, a workbench's), if it is stored: read
    without running anything."""
    settings = CalibrationSettings.for_device(run.request.placement.device)
    hit = results.lookup("calibration", calibration_inputs(run, layer, list(range(run.mean_diff.shape[1])), settings,
                                                           0, "ft", judge))
    return None if hit is None else hit.meta["positions"]


def calibrate(run: AdlRun, layer: int, positions: list[int], settings: CalibrationSettings | None = None,
              seed: int = 0, side: Side = "ft", judge: Judge | None = None) -> list[dict[str, Any]]:
    """Largest coherent strength per position (cached, keyed by the judge and the protocol). `grid`: all positions
    in one generate call; `bisect`: the reference's 12-step bisection per position (slower, finer); the paper
    protocol bisects per prompt and averages. Each position says its judge and how many samples went ungraded; the
    result has the same JSON shape (lists, not tuples) whether computed or read from the cache."""
    s = settings or CalibrationSettings.for_device(run.request.placement.device)
    judge = judge or Judge()
    check_protocol(s, judge)
    method, max_strength, grid_size, samples = s.method, s.max_strength, s.grid_size, s.samples
    max_new_tokens, temperature, threshold = s.max_new_tokens, s.temperature, s.threshold
    if method not in ("grid", "bisect"):
        raise UserError(f"unknown calibration method {method!r}", "pass grid or bisect")
    prompts = s.calibration_prompts()
    inputs = calibration_inputs(run, layer, positions, s, seed, side, judge)
    if (hit := results.lookup("calibration", inputs)) is not None:
        return hit.meta["positions"]
    vectors = steering_vectors(run, layer, positions)
    coherence_judge = coherence_grader(s, judge)
    label = judge.label("coherence")
    with run.pair().use(side) as model:
        if method == "grid":
            found = calibrate_grid(model, vectors, layer, geometric_grid(max_strength, grid_size), prompts,
                                   judge=coherence_judge, samples=samples, temperature=temperature,
                                   threshold=threshold, max_new_tokens=max_new_tokens, seed=seed)
            out = [{"pos": p, "strength": c.strength, "coherence": [list(x) for x in c.coherence],
                    "examples": [list(x) for x in c.examples], "ungraded": c.ungraded, "judge": label}
                   for p, c in zip(positions, found, strict=True)]
            if not any(c.ungraded for c in found):
                file_samples(steering_inputs(run, layer, prompts, samples, max_new_tokens, temperature, seed, side),
                             dict(zip(positions, found, strict=True)))
        else:
            sampling: dict[str, Any] = dict(samples=samples, temperature=temperature, threshold=threshold,
                                            max_new_tokens=max_new_tokens, seed=seed,
                                            leave_out_ungraded=s.leave_out_ungraded)
            out = []
            for p, vector in zip(positions, vectors, strict=True):
                found_each = (calibrate_reference(model, vector, layer, prompts, coherence_judge, max_strength,
                                                  s.steps, s.follow_steps, s.follow_span, **sampling)
                              if s.follow_steps is not None else
                              [calibrate_strength(model, vector, layer, prompts, coherence_judge, max_strength,
                                                  s.steps, **sampling)])
                steps = [step for c in found_each for step in c.steps]
                out.append({"pos": p, "strength": sum(c.strength for c in found_each) / len(found_each),
                            "per_prompt": [c.strength for c in found_each],
                            "coherence": [[step.strength, step.coherence] for step in steps], "examples": [],
                            "ungraded": sum(step.ungraded for step in steps), "judge": label})
    if not any(o["ungraded"] for o in out):  # a judge outage is not cached: the next call asks again
        results.save("calibration", inputs, {"strengths": np.asarray([o["strength"] for o in out], np.float32)},
                     {"positions": out})
    return out


def file_samples(inputs: dict[str, Any], found: dict[int, GridCalibration]) -> None:
    """Each position's calibration texts at its chosen strength, filed as the steering samples of that cell under
    the calibration's settings (`inputs`): a steering request with those settings is answered by them. A filed
    cell's seed is the request's; its texts were drawn in the calibration's round for that strength."""
    if any(cell.unsteered for cell in found.values()):
        _save_unsteered(inputs, next(cell.unsteered for cell in found.values() if cell.unsteered))
    for pos, cell in found.items():
        if cell.strength > 0 and cell.samples:
            prompts, per_prompt = inputs["prompts"], inputs["samples"]
            made = [{"prompt": prompts[i // per_prompt], "strength": cell.strength, "sample": i % per_prompt,
                     "steered": text, "unsteered": plain}
                    for i, (text, plain) in enumerate(zip(cell.samples, cell.unsteered, strict=True))]
            _save_cell(inputs, (pos, cell.strength), made)
