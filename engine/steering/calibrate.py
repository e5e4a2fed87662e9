"""Strength calibration: the largest steering strength whose samples stay coherent, by bisection.

Reference defaults: search [0, 100] in 12 halvings; at each midpoint sample 10 continuations per
calibration prompt at temperature 1.2 (all in one generate call) and accept when >= 75 % are coherent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from jaxtyping import Float
from torch import Tensor

from engine.models.loading import LoadedModel
from engine.steering.coherence import CoherenceJudge, perplexity_judge
from engine.steering.generate import generate_steered
from engine.steering.prompts import calibration_prompts


@dataclass
class CalibrationStep:
    strength: float
    coherence: float
    passed: bool
    examples: list[str] = field(default_factory=list)


@dataclass
class Calibration:
    """The chosen strength and every probe on the way (for the TUI and the report)."""

    strength: float
    steps: list[CalibrationStep]
    judge: str


def bisect_strength(coherence_at: Callable[[float], tuple[float, list[str]]], max_strength: float = 100.0,
                    steps: int = 12, threshold: float = 0.75,
                    on_step: Callable[[CalibrationStep], None] | None = None) -> tuple[float, list[CalibrationStep]]:
    """Bisection on [0, max_strength] for the largest strength with coherence >= threshold.

    Assumes coherence falls with strength; returns the last passing midpoint (0 if none passed).
    """
    low, high = 0.0, float(max_strength)
    history: list[CalibrationStep] = []
    for _ in range(steps):
        mid = (low + high) / 2
        coherence, examples = coherence_at(mid)
        step = CalibrationStep(strength=mid, coherence=coherence, passed=coherence >= threshold, examples=examples)
        history.append(step)
        if on_step is not None:
            on_step(step)
        low, high = (mid, high) if step.passed else (low, mid)
    return low, history


def calibrate_strength(model: LoadedModel, vector: Float[Tensor, " d_model"], layer: int,
                       prompts: Sequence[str] | None = None, judge: CoherenceJudge | None = None,
                       max_strength: float = 100.0, steps: int = 12, samples: int = 10,
                       temperature: float = 1.2, threshold: float = 0.75, max_new_tokens: int = 64,
                       seed: int = 0, on_step: Callable[[CalibrationStep], None] | None = None) -> Calibration:
    """Largest coherent strength of `vector` at `layer` on this model.

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

    def coherence_at(strength: float) -> tuple[float, list[str]]:
        nonlocal probe
        probe += 1
        batch = generate_steered(model, vector, layer, prompts, [strength], samples=samples,
                                 max_new_tokens=max_new_tokens, temperature=temperature, seed=seed + probe)
        verdicts = judge(batch)
        return sum(verdicts) / len(verdicts), [s.text for s in batch[:: samples]]

    strength, history = bisect_strength(coherence_at, max_strength, steps, threshold, on_step)
    return Calibration(strength=strength, steps=history, judge=kind)
