"""Strength calibration: the largest steering strength whose samples stay coherent, by bisection
(the reference) or on a geometric grid, bisected over its strengths for many vectors at once, one batched call
per round (`calibrate_grid`).

Reference defaults: search [0, 100] in 12 halvings; at each midpoint sample 10 continuations per
calibration prompt at temperature 1.2 (all in one generate call) and accept when >= 75 % are coherent.
Ungraded samples (an LLM judge gave no verdict) are counted, reported per step, and never count as coherent.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from engine import jobs
from engine.models.loading import LoadedModel
from engine.steering.coherence import CoherenceJudge, perplexity_judge
from engine.steering.generate import SteeredSample, generate_rows, generate_steered
from engine.steering.steering_prompts import calibration_prompts


@dataclass
class CalibrationStep:
    strength: float
    coherence: float
    passed: bool
    examples: list[str] = field(default_factory=list)
    ungraded: int = 0


@dataclass
class Calibration:
    """The chosen strength and every probe on the way (for the TUI and the report)."""

    strength: float
    steps: list[CalibrationStep]
    judge: str


def coherent_share(verdicts: Sequence[bool | None], leave_out_ungraded: bool = False) -> tuple[float, int]:
    """(share judged coherent, number ungraded) of a batch of verdicts. Ungraded verdicts count against
    coherence, or with `leave_out_ungraded` (the reference's UNKNOWN) leave the denominator (none graded: 0)."""
    ungraded = sum(v is None for v in verdicts)
    graded = len(verdicts) - ungraded if leave_out_ungraded else len(verdicts)
    return sum(v is True for v in verdicts) / max(graded, 1), ungraded


def bisect_strength(coherence_at: Callable[[float], tuple[float, list[str], int]], max_strength: float = 100.0,
                    steps: int = 12, threshold: float = 0.75,
                    on_step: Callable[[CalibrationStep], None] | None = None) -> tuple[float, list[CalibrationStep]]:
    """Bisection on [0, max_strength] for the largest strength with coherence >= threshold.

    `coherence_at(strength)` gives (coherent share, example texts, ungraded samples). Assumes coherence falls
    with strength; returns the last passing midpoint (0 if none passed).
    """
    low, high = 0.0, float(max_strength)
    history: list[CalibrationStep] = []
    for _ in range(steps):
        mid = (low + high) / 2
        coherence, examples, ungraded = coherence_at(mid)
        step = CalibrationStep(strength=mid, coherence=coherence, passed=coherence >= threshold, examples=examples,
                               ungraded=ungraded)
        history.append(step)
        if on_step is not None:
            on_step(step)
        low, high = (mid, high) if step.passed else (low, mid)
    return low, history


def calibrate_strength(model: LoadedModel, vector: Float[Tensor, " d_model"], layer: int,
                       prompts: Sequence[str] | None = None, judge: CoherenceJudge | None = None,
                       max_strength: float = 100.0, steps: int = 12, samples: int = 10,
                       temperature: float = 1.2, threshold: float = 0.75, max_new_tokens: int = 64,
                       seed: int = 0, on_step: Callable[[CalibrationStep], None] | None = None,
                       leave_out_ungraded: bool = False) -> Calibration:
    """Largest coherent strength of `vector` at `layer` on this model (`steps` halvings of [0, max_strength]).
    `leave_out_ungraded`: the reference's share, over the non-empty samples the judge labelled.

    Without `judge`, the offline perplexity judge is used, calibrated on unsteered samples drawn with the
    same prompts, count and temperature (one extra generate call).
    """
    prompts = list(prompts) if prompts else calibration_prompts()
    kind = "llm"
    if judge is None:
        reference = generate_steered(model, vector, layer, prompts, [0.0], samples=samples,
                                     max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
        judge, kind = perplexity_judge(model, reference), "perplexity"
    probe = 0

    def coherence_at(strength: float) -> tuple[float, list[str], int]:
        nonlocal probe
        probe += 1
        with jobs.current().stage(f"bisection step {probe}/{steps}"):
            batch = generate_steered(model, vector, layer, prompts, [strength], samples=samples,
                                     max_new_tokens=max_new_tokens, temperature=temperature, seed=seed + probe)
        graded = [s for s in batch if s.text.strip()] if leave_out_ungraded else batch  # the reference drops empties
        share, ungraded = coherent_share(judge(graded), leave_out_ungraded) if graded else (0.0, 0)
        return share, [s.text for s in batch[:: samples]], ungraded

    strength, history = bisect_strength(coherence_at, max_strength, steps, threshold, on_step)
    return Calibration(strength=strength, steps=history, judge=kind)


def calibrate_reference(model: LoadedModel, vector: Float[Tensor, " d_model"], layer: int, prompts: Sequence[str],
                        judge: CoherenceJudge | None, max_strength: float, steps: int, follow_steps: int,
                        follow_span: float, **sampling: Any) -> list[Calibration]:
    """The reference's search (`find_steering_threshold`), one bisection per prompt: the first prompt `steps`
    halvings of [0, max_strength] giving t₁, every later prompt `follow_steps` halvings of [0, follow_span·t₁].
    With t₁ = 0 the later prompts get 0 without a search (the reference asserts a non-empty bracket there).
    `sampling` is `calibrate_strength`'s samples, temperature, threshold, lengths, seed, ungraded rule."""
    first = calibrate_strength(model, vector, layer, prompts[:1], judge, max_strength, steps, **sampling)
    found = [first]
    for prompt in prompts[1:]:
        found.append(calibrate_strength(model, vector, layer, [prompt], judge, follow_span * first.strength,
                                        follow_steps, **sampling) if first.strength > 0
                     else Calibration(strength=0.0, steps=[], judge=first.judge))
    return found


@dataclass
class GridCalibration:
    """Coherence at each grid strength the search probed for one vector (in strength order); `strength` is the
    largest probed strength that passed below the smallest that failed (coherence is taken to fall with
    strength, so that is the edge)."""

    strength: float
    coherence: list[tuple[float, float]]
    examples: list[tuple[float, str]]
    ungraded: int = 0
    samples: list[str] = field(default_factory=list)    # every text drawn at `strength`, prompt by prompt
    unsteered: list[str] = field(default_factory=list)  # the same prompts unsteered (drawn once, for all vectors)


def grid_rounds(n_strengths: int) -> int:
    """Generate calls the grid search makes for any number of vectors: a bisection over `n_strengths` + 1
    outcomes (none passes, up to all pass)."""
    return math.ceil(math.log2(n_strengths + 1))


def calibrate_grid(model: LoadedModel, vectors: Float[Tensor, "vector d_model"], layer: int,
                   strengths: Sequence[float], prompts: Sequence[str] | None = None,
                   judge: CoherenceJudge | None = None, samples: int = 4, temperature: float = 1.2,
                   threshold: float = 0.75, max_new_tokens: int = 48, seed: int = 0) -> list[GridCalibration]:
    """Strength calibration of several vectors by bisection over the grid's indices, every vector's probe of a
    round in one generate call (`grid_rounds` calls in all; the first also carries the unsteered rows, which
    calibrate the offline judge). Each vector keeps its texts at its calibrated strength and the unsteered ones:
    they are steering samples at these settings.

    Why bisection: coherence is taken to fall with strength, so a passing strength says every smaller one passes
    and a failing one that every larger one fails; on a CPU a generate costs about its rows and its steps, and a
    bisection asks about log2 of the grid's strengths per vector instead of every one up to the edge (7 grid
    strengths: 3 rounds, where walking up from the smallest took 5 on the demo pair). Where coherence does fall
    with strength both find the same edge (tests/engine/test_steering.py checks it against the walk).
    """
    prompts = list(prompts) if prompts else calibration_prompts()
    grid = sorted(float(s) for s in strengths)
    n_vectors, per_cell = vectors.shape[0], len(prompts) * samples
    found = [GridCalibration(strength=0.0, coherence=[], examples=[]) for _ in range(n_vectors)]
    low, high = [-1] * n_vectors, [len(grid)] * n_vectors  # low passed (or none), high failed (or past the grid)
    unsteered: list[str] = []
    rounds = grid_rounds(len(grid))
    for round_index in range(rounds):
        probing = [v for v in range(n_vectors) if high[v] - low[v] > 1]
        if not probing:
            break
        probe = {v: (low[v] + high[v]) // 2 for v in probing}
        row_prompts = [p for _ in probing for p in prompts for _ in range(samples)]
        row_strengths = [grid[probe[v]] for v in probing for _ in range(per_cell)]
        addends = [vectors[v].float() * grid[probe[v]] for v in probing for _ in range(per_cell)]
        n_steered = len(row_prompts)
        if round_index == 0:  # the unsteered texts (the offline judge's reference), drawn once with the first round
            row_prompts += [p for p in prompts for _ in range(samples)]
            row_strengths += [0.0] * per_cell
            addends += [torch.zeros(vectors.shape[1])] * per_cell
        probed = ", ".join(f"{a:g}" for a in sorted({grid[i] for i in probe.values()}))
        with jobs.current().stage(f"strength round {round_index + 1} of {rounds} (α {probed})"):
            texts, prompt_ids, completion_ids = generate_rows(model, layer, row_prompts, torch.stack(addends),
                                                              max_new_tokens, temperature, seed + round_index)
        made = [SteeredSample(prompt=p, strength=a, sample=0, text=t, prompt_ids=ids, completion_ids=c)
                for p, a, t, ids, c in zip(row_prompts, row_strengths, texts, prompt_ids, completion_ids, strict=True)]
        if round_index == 0:
            unsteered = [sample.text for sample in made[n_steered:]]
        if judge is None:
            judge = perplexity_judge(model, made[n_steered:])
        verdicts = judge(made[:n_steered])
        for index, v in enumerate(probing):
            share, missing = coherent_share(verdicts[index * per_cell: (index + 1) * per_cell])
            strength, cell = grid[probe[v]], found[v]
            cell.ungraded += missing
            cell.coherence.append((strength, share))
            cell.examples.append((strength, made[index * per_cell].text))
            if share >= threshold:
                low[v] = probe[v]
                cell.strength = strength
                cell.samples = [sample.text for sample in made[index * per_cell: (index + 1) * per_cell]]
                cell.unsteered = unsteered
            else:
                high[v] = probe[v]
    for cell in found:
        cell.coherence.sort()
        cell.examples.sort(key=lambda example: example[0])
    return found


def geometric_grid(max_strength: float, n: int = 8, ratio: float = 2.0) -> list[float]:
    """`n` strengths ending at `max_strength`, each `ratio` times the previous."""
    return [max_strength / ratio ** i for i in reversed(range(n))]
