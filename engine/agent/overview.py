"""The agent's first-message overview, assembled from an environment's own free readouts.

Any environment can build its `overview()` with `build_overview(self, …)`, so live and recorded runs give
the agent exactly the same shape.
"""

from __future__ import annotations

from typing import Any

from engine.agent.environment import AgentEnvironment, ToolError

OVERVIEW_POSITIONS = [0, 1, 2, 3, 4]
OVERVIEW_TOP_K = 10
OVERVIEW_SAMPLE_CHARS = 128


def build_overview(env: AgentEnvironment, layer: int, n_layers: int, positions: list[int] | None = None,
                   k: int = OVERVIEW_TOP_K, sample_chars: int = OVERVIEW_SAMPLE_CHARS) -> dict[str, Any]:
    """Top-k logit-lens and Patchscope tokens per position plus one steered/unsteered sample per prompt."""
    positions = list(OVERVIEW_POSITIONS if positions is None else positions)
    lens = env.logitlens_details(layer, positions, k)["positions"]
    try:
        scope = env.patchscope_details(layer, positions, k)["positions"]
    except ToolError:  # a recorded report without Patchscope (a trajectory step's)
        scope = {}
    steering: dict[str, list[dict[str, str]]] = {}
    for pos in positions:
        try:
            cached = env.steering_samples(layer, pos, 1)
        except ToolError:
            continue
        steering[str(pos)] = [{"prompt": s["prompt"], "steered": s["steered"][0][:sample_chars],
                               "unsteered": s["unsteered"][0][:sample_chars]}
                              for s in cached["samples"] if s["steered"] and s["unsteered"]]
    return {"layer": layer, "n_layers": n_layers, "positions": positions,
            "logit_lens": lens, "patchscope": scope, "steering": steering}
