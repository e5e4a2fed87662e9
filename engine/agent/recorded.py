"""An environment replayed from a plain dict: for tests, for replaying a stored run, and for agents on
evidence computed elsewhere.

```
{"n_layers": 18, "layer": 9, "positions": [0, 1, 2, 3, 4],          # layer/positions optional
 "logit_lens": {"9": {"0": [["bake", 0.12], …]}},
 "patchscope": {"9": {"0": {"tokens": [["cake", 0.3], …], "selected": ["cake"]}}},
 "steering":   {"9": {"0": {"strength": 4.0, "samples": [{"prompt": …, "steered": [...], "unsteered": [...]}]}}},
 "answers":    {"<prompt>": {"base": …, "finetuned": …}},          # what ask_model replays
 "steered":    {"9": {"0": {"<prompt>": "<steered text>"}}},          # what generate_steered replays
 "overview":   {...}}                                                  # optional; else built from the above
```
"""

from __future__ import annotations

from typing import Any

from engine.adl.depth import middle_layer
from engine.agent.environment import ToolError
from engine.agent.overview import build_overview
from engine.errors import UserError

_FIX = "pass environment as the recorded-environment dict described in engine/agent/recorded.py"


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise UserError(f"recorded environment: {what}", _FIX)


def _check_tokens(tokens: Any, where: str) -> None:
    _check(isinstance(tokens, list) and all(
        isinstance(t, list) and len(t) == 2 and isinstance(t[0], str) and isinstance(t[1], int | float)
        for t in tokens), f"{where} must be a list of [token, prob] pairs")


def _check_by_layer_pos(table: Any, name: str) -> None:
    _check(isinstance(table, dict), f"{name!r} must map layer -> position -> value")
    for layer, by_pos in table.items():
        _check(str(layer).lstrip("-").isdigit() and isinstance(by_pos, dict),
               f"{name!r} must map layer numbers to position tables")
        _check(all(str(pos).isdigit() for pos in by_pos), f"{name!r} layer {layer}: positions must be numbers")


def _validate(data: Any) -> None:
    _check(isinstance(data, dict), "must be a JSON object")
    _check(isinstance(data.get("n_layers"), int) and data["n_layers"] > 0, "'n_layers' must be a positive int")
    _check(isinstance(data.get("layer", 0), int), "'layer' must be an int")
    positions = data.get("positions", [0])
    _check(isinstance(positions, list) and all(isinstance(p, int) and p >= 0 for p in positions),
           "'positions' must be a list of non-negative ints")
    for name in ("logit_lens", "patchscope", "steering", "steered"):
        _check_by_layer_pos(data.get(name, {}), name)
    for layer, by_pos in data.get("logit_lens", {}).items():
        for pos, tokens in by_pos.items():
            _check_tokens(tokens, f"logit_lens[{layer}][{pos}]")
    for layer, by_pos in data.get("patchscope", {}).items():
        for pos, cell in by_pos.items():
            _check(isinstance(cell, dict), f"patchscope[{layer}][{pos}] must be {{tokens, selected}}")
            _check_tokens(cell.get("tokens"), f"patchscope[{layer}][{pos}].tokens")
    for layer, by_pos in data.get("steering", {}).items():
        for pos, cell in by_pos.items():
            _check(isinstance(cell, dict) and isinstance(cell.get("samples"), list) and all(
                isinstance(s, dict) and isinstance(s.get("prompt"), str) and isinstance(s.get("steered"), list)
                and isinstance(s.get("unsteered"), list) for s in cell["samples"]),
                f"steering[{layer}][{pos}] must be {{strength, samples: [{{prompt, steered, unsteered}}]}}")
    answers = data.get("answers", {})
    _check(isinstance(answers, dict) and all(
        isinstance(a, dict) and isinstance(a.get("base"), str) and isinstance(a.get("finetuned"), str)
        for a in answers.values()), "'answers' must map prompt -> {base, finetuned}")


class RecordedEnvironment:
    """Serves the agent's requests from recorded results; unrecorded requests are `ToolError`s."""

    def __init__(self, data: dict[str, Any]) -> None:
        _validate(data)
        self.data = data
        self.n_layers: int = data["n_layers"]
        self.layer: int = data.get("layer", middle_layer(self.n_layers))
        self.positions: list[int] | None = data.get("positions")
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def _cell(self, table: str, layer: int, pos: int) -> Any:
        by_pos = self.data.get(table, {}).get(str(layer))
        if by_pos is None:
            cached = sorted(int(k) for k in self.data.get(table, {}))
            raise ToolError(f"no {table.replace('_', ' ')} results for layer {layer}; cached layers: {cached}")
        if str(pos) not in by_pos:
            raise ToolError(f"no {table.replace('_', ' ')} results for position {pos} at layer {layer}; "
                            f"cached positions: {sorted(int(p) for p in by_pos)}")
        return by_pos[str(pos)]

    def overview(self) -> dict[str, Any]:
        self.calls.append(("overview", {}))
        if "overview" in self.data:
            return self.data["overview"]
        return build_overview(self, self.layer, self.n_layers, self.positions)

    def logitlens_details(self, layer: int, positions: list[int], k: int) -> dict[str, Any]:
        self.calls.append(("logitlens_details", {"layer": layer, "positions": positions, "k": k}))
        return {"layer": layer,
                "positions": {str(p): self._cell("logit_lens", layer, p)[:k] for p in positions}}

    def patchscope_details(self, layer: int, positions: list[int], k: int) -> dict[str, Any]:
        self.calls.append(("patchscope_details", {"layer": layer, "positions": positions, "k": k}))
        out = {}
        for p in positions:
            cell = self._cell("patchscope", layer, p)
            out[str(p)] = {"tokens": cell["tokens"][:k], "selected": list(cell.get("selected", []))}
        return {"layer": layer, "positions": out}

    def steering_samples(self, layer: int, position: int, n: int) -> dict[str, Any]:
        self.calls.append(("steering_samples", {"layer": layer, "position": position, "n": n}))
        cell = self._cell("steering", layer, position)
        return {"layer": layer, "position": position, "strength": cell.get("strength"),
                "samples": [{"prompt": s["prompt"], "steered": s["steered"][:n], "unsteered": s["unsteered"][:n]}
                            for s in cell["samples"]]}

    def ask_model(self, prompts: list[str]) -> dict[str, Any]:
        self.calls.append(("ask_model", {"prompts": prompts}))
        answers = self.data.get("answers", {})
        missing = [p for p in prompts if p not in answers]
        if missing:
            raise ToolError(f"this recording holds no answer for {missing[0]!r}; "
                            f"recorded prompts: {list(answers)[:5]}")
        return {"answers": [{"prompt": p, **answers[p]} for p in prompts]}

    def generate_steered(self, layer: int, position: int, prompts: list[str],
                         strength: float | None) -> dict[str, Any]:
        self.calls.append(("generate_steered", {"layer": layer, "position": position, "prompts": prompts,
                                                "strength": strength}))
        texts = self._cell("steered", layer, position)
        recorded = self.data.get("steering", {}).get(str(layer), {}).get(str(position), {}).get("strength")
        if strength is not None and recorded is not None and strength != recorded:
            raise ToolError(f"this recording only holds steered text at strength {recorded}")
        missing = [p for p in prompts if p not in texts]
        if missing:
            raise ToolError(f"this recording holds no steered text for {missing[0]!r}; "
                            f"recorded prompts: {list(texts)[:5]}")
        return {"layer": layer, "position": position, "strength": recorded,
                "samples": [{"prompt": p, "steered": texts[p]} for p in prompts]}
