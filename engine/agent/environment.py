"""What the agent may look at and do: the narrow interface the rest of the engine implements.

Result shapes (all JSON-able; tokens are `[token_str, prob]` pairs, positions are JSON-object keys):

- `overview()` → `{"layer": int, "n_layers": int, "positions": [int],
   "logit_lens": {pos: [[tok, p], …]}, "patchscope": {pos: {"tokens": [[tok, p], …], "selected": [tok]}},
   "steering": {pos: [{"prompt", "steered", "unsteered"}]}}` — never names the models (a finetune's
   name can give the answer away).
- `logitlens_details` → `{"layer", "positions": {pos: [[tok, p], …]}}`
- `patchscope_details` → `{"layer", "positions": {pos: {"tokens": [[tok, p], …], "selected": [tok]}}}`
- `steering_samples` → `{"layer", "position", "strength", "samples": [{"prompt", "steered": [str],
   "unsteered": [str]}]}`
- `ask_model` → `{"answers": [{"prompt", "base", "finetuned"}]}`
- `generate_steered` → `{"layer", "position", "strength", "samples": [{"prompt", "steered"}]}`

A request the environment cannot answer (layer not cached, …) raises `ToolError`; the agent sees the
message and carries on.
"""

from __future__ import annotations

from typing import Any, Protocol


class ToolError(Exception):
    """A tool request that cannot be served; the message goes back to the agent, the run goes on."""


class AgentEnvironment(Protocol):
    """The models and cached readouts of one base/finetuned pair, as the agent sees them."""

    def overview(self) -> dict[str, Any]:
        """The compact first-message evidence (report layer, positions 0–4, top 10 tokens, samples ≤128 chars)."""
        ...

    def logitlens_details(self, layer: int, positions: list[int], k: int) -> dict[str, Any]:
        """Cached logit-lens tokens of the mean difference (free)."""
        ...

    def patchscope_details(self, layer: int, positions: list[int], k: int) -> dict[str, Any]:
        """Cached Patchscope tokens of the mean difference, with the selected ones (free)."""
        ...

    def steering_samples(self, layer: int, position: int, n: int) -> dict[str, Any]:
        """Cached steered/unsteered generations, up to `n` per prompt, full length (free)."""
        ...

    def ask_model(self, prompts: list[str]) -> dict[str, Any]:
        """Each prompt answered by the base and the finetuned model (one model interaction per prompt)."""
        ...

    def generate_steered(self, layer: int, position: int, prompts: list[str],
                         strength: float | None) -> dict[str, Any]:
        """The finetuned model steered with the difference; `None` = the cached coherent strength."""
        ...


def baseline_overview(overview: dict[str, Any], max_chars: int = 128) -> dict[str, Any]:
    """What the blackbox baseline sees: the finetuned model's plain (unsteered) samples, one per prompt."""
    seen: dict[str, str] = {}
    for samples in (overview.get("steering") or {}).values():
        for sample in samples:
            seen.setdefault(sample["prompt"], sample["unsteered"][:max_chars])
    return {"samples": [{"prompt": prompt, "generation": text} for prompt, text in seen.items()]}
