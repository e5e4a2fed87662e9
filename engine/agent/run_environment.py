"""The agent's view of a cached ADL run: free tools read (or fill) the caches, budgeted ones run models."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.adl.runs import AdlRun
from engine.agent.environment import ToolError
from engine.agent.overview import build_overview
from engine.agent.protocols import PROTOCOLS, AgentProtocol, Sampling
from engine.errors import UserError
from engine.judges.judge_config import Judge
from engine.protocol.methods import DEFAULT_TEMPERATURE
from engine.results.calibrated_steering import CalibrationSettings, calibrate, steer, steer_cells
from engine.results.paper_relevance import paper_patchscope
from engine.results.readout_cells import Grid, lens_grid, patchscope_cells
from engine.steering.generate import generate_unsteered
from engine.steering.steering_prompts import default_prompts


@dataclass
class SteeringSettings:
    """How the run's steering samples are made: prompts, samples per prompt and length."""

    prompts: list[str] = field(default_factory=lambda: list(default_prompts()))
    samples: int = 1
    max_new_tokens: int = 64
    temperature: float = DEFAULT_TEMPERATURE


@dataclass
class RunEnvironment:
    """Implements `engine.agent.environment.AgentEnvironment` over one run. The protocol sets how long and how
    hot the models answer the agent; sampling is seeded, so the same prompts get the same answers (in every
    run, and for the ADL agent and the baseline alike)."""

    run: AdlRun
    layer: int
    positions: list[int]
    steering: SteeringSettings = field(default_factory=SteeringSettings)
    calibration: CalibrationSettings | None = None
    protocol: AgentProtocol = PROTOCOLS["default"]
    judge: Judge = field(default_factory=Judge)
    # Judged results this environment already has: one with ungraded items is not cached in the store (a later
    # run asks the judge again), and within one report the judge must not be asked twice.
    _scopes: dict[tuple[int, tuple[int, ...]], Grid] = field(default_factory=dict, init=False, repr=False)
    _calibrations: dict[int, list[dict[str, Any]]] = field(default_factory=dict, init=False, repr=False)

    def _cell(self, layer: int, positions: list[int]) -> tuple[int, list[int]]:
        try:
            row = self.run.layer_index(layer)
            return row, [self.run.check_position(p) for p in positions]
        except UserError as exc:
            raise ToolError(str(exc)) from exc

    def overview(self) -> dict[str, Any]:
        return build_overview(self, self.layer, int(self.run.meta["n_layers"]), self.positions)

    def logitlens_details(self, layer: int, positions: list[int], k: int) -> dict[str, Any]:
        row, positions = self._cell(layer, positions)
        grid = lens_grid(self.run)
        return {"layer": layer, "positions": {str(p): grid.pairs(row, p, k=k) for p in positions}}

    def patchscope_details(self, layer: int, positions: list[int], k: int) -> dict[str, Any]:
        _, positions = self._cell(layer, positions)
        grid = self.patchscope_grid(layer, positions)
        out = {}
        for index, pos in enumerate(positions):
            best = grid.meta["scales"].index(grid.meta["best_scale"][index])
            out[str(pos)] = {"tokens": grid.pairs(index, best, k=k), "selected": grid.meta["selected"][index],
                             "scale": grid.meta["best_scale"][index]}
        return {"layer": layer, "positions": out}

    def patchscope_grid(self, layer: int, positions: list[int]) -> Grid:
        """Patchscope of the diff at `layer`, chosen by the environment's judge (asked once per environment); under
        `--protocol paper` the reference's scales and grader."""
        key = (layer, tuple(positions))
        if key not in self._scopes:
            self._scopes[key] = (paper_patchscope(self.run, layer, positions, self.judge)
                                 if self.calibration is not None and self.calibration.protocol == "paper"
                                 else patchscope_cells(self.run, layer, positions, judge=self.judge))
        return self._scopes[key]

    def calibration_cells(self, layer: int) -> list[dict[str, Any]]:
        """Every position's calibration at `layer` in one batch (strength, coherence, judge, ungraded samples)."""
        if layer not in self._calibrations:
            self._calibrations[layer] = calibrate(self.run, layer, self.positions, self.calibration, judge=self.judge)
        return self._calibrations[layer]

    def calibrated(self, layer: int) -> dict[int, float]:
        """Coherent strength per position at `layer`: the environment's positions calibrated in one batch."""
        return {c["pos"]: c["strength"] for c in self.calibration_cells(layer)}

    def steering_table(self, layer: int, on_partial: Any = None) -> dict[int, list[dict[str, Any]]]:
        """Samples at every position's calibrated strength, all positions in one generate call (cached)."""
        strengths = self.calibrated(layer)
        cells = [(p, s) for p, s in strengths.items() if s > 0]
        if not cells:
            return {}
        st = self.steering
        table = steer_cells(self.run, layer, cells, st.prompts, samples=st.samples, max_new_tokens=st.max_new_tokens,
                            temperature=st.temperature, on_partial=on_partial)
        return {pos: samples for (pos, _), samples in table.items()}

    def steering_samples(self, layer: int, position: int, n: int) -> dict[str, Any]:
        _, [position] = self._cell(layer, [position])
        if position not in self.positions:
            raise ToolError(f"position {position} is not among the steered positions {self.positions}")
        made = self.steering_table(layer).get(position)
        if not made:
            raise ToolError(f"no coherent steering strength at layer {layer} position {position}")
        by_prompt: dict[str, dict[str, list[str]]] = {}
        for sample in made:
            entry = by_prompt.setdefault(sample["prompt"], {"steered": [], "unsteered": []})
            entry["steered"].append(sample["steered"])
            entry["unsteered"].append(sample["unsteered"])
        return {"layer": layer, "position": position, "strength": made[0]["strength"],
                "samples": [{"prompt": p, "steered": v["steered"][:n], "unsteered": v["unsteered"][:n]}
                            for p, v in by_prompt.items()]}

    def ask_model(self, prompts: list[str]) -> dict[str, Any]:
        pair, ask = self.run.pair(), self.protocol.ask_model
        answers: dict[str, list[str]] = {}
        for side in ("base", "ft"):
            with pair.use(side) as model:
                answers[side] = generate_unsteered(model, prompts, ask.max_new_tokens, ask.temperature)
        return {"answers": [{"prompt": p, "base": b, "finetuned": f}
                            for p, b, f in zip(prompts, answers["base"], answers["ft"], strict=True)]}

    def generate_steered(self, layer: int, position: int, prompts: list[str],
                         strength: float | None) -> dict[str, Any]:
        _, [position] = self._cell(layer, [position])
        if strength is None:
            strength = self.calibrated(layer).get(position) if position in self.positions else None
            if not strength:
                raise ToolError(f"no calibrated strength at layer {layer} position {position}; pass one")
        sampling = self.protocol.generate_steered or Sampling(self.steering.max_new_tokens, self.steering.temperature)
        made = steer(self.run, layer, position, [strength], prompts, max_new_tokens=sampling.max_new_tokens,
                     temperature=sampling.temperature)
        return {"layer": layer, "position": position, "strength": strength,
                "samples": [{"prompt": s["prompt"], "steered": s["steered"]} for s in made]}
