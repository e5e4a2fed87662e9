"""The lenses as optional, budgeted agent tools bound to one pair (`lens_tools(request)`).

They follow the agent's `Tool` contract (check → run → JSON result); each text or prompt costs one model
interaction, like `ask_model`. The environment argument is unused: the tools run the pair they are bound to.
Results name no model (a finetune's name can give the answer away).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.adl.runs import AdlRun
from engine.agent.environment import AgentEnvironment
from engine.agent.tools import MAX_PROMPT_CHARS, Tool, ToolArgError
from engine.lenses.amplify import MODULE_KINDS, Scope, amplify
from engine.lenses.causal import causal_check
from engine.lenses.direction import DirectionTest, direction_effect, random_diffs, random_vectors, strongest_position
from engine.lenses.kl import per_token_divergence
from engine.lenses.mining import mine
from engine.lenses.pair_request import PairRequest, gather_texts
from engine.lenses.pca import difference_pca

MAX_TEXTS = 8
GENERIC_REFERENCE = 8  # generic texts the causal check compares against (fixed, so results are comparable)
MAX_FACTORS = 3
FACTOR_RANGE = (-3.0, 5.0)
PCA_REFERENCE = 64  # generic texts whose differences the agent's PCA reads
TOOL_TOPICS = 3  # NMF topics the agent's diff mining groups its tokens into
TOOL_CONTROLS = 8  # random controls of each kind in the agent's direction test (fewer than the CLI's: cost)


@dataclass(frozen=True)
class LensTool(Tool):
    """A budgeted tool whose cost is the number of entries in its `unit` argument."""

    unit: str = "texts"

    def cost(self, args: dict[str, Any]) -> int:
        return len(args[self.unit])

    def signature(self) -> str:
        props = self.parameters["properties"]
        args = ", ".join(f'"{name}": {spec.get("x-hint", spec["type"])}' for name, spec in props.items())
        return f"- {self.name} {{{args}}} (budgeted: 1 model interaction per entry of {self.unit}) — {self.description}"


def _strings(args: dict[str, Any], name: str) -> list[str]:
    value = args.get(name)
    value = [value] if isinstance(value, str) else value
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise ToolArgError(f"{name!r} must be a non-empty list of non-empty strings")
    if len(value) > MAX_TEXTS or any(len(v) > MAX_PROMPT_CHARS for v in value):
        raise ToolArgError(f"{name!r} takes at most {MAX_TEXTS} entries of {MAX_PROMPT_CHARS} characters")
    return value


def _factors(args: dict[str, Any]) -> list[float]:
    value = args.get("factors", [2.0])
    ok = (isinstance(value, list) and 0 < len(value) <= MAX_FACTORS
          and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
          and all(FACTOR_RANGE[0] <= v <= FACTOR_RANGE[1] for v in value))
    if not ok:
        raise ToolArgError(f"'factors' must be 1 to {MAX_FACTORS} numbers between {FACTOR_RANGE[0]} and "
                           f"{FACTOR_RANGE[1]}")
    return [float(v) for v in value]


def _modules(args: dict[str, Any]) -> str:
    value = args.get("modules", "all")
    if value not in MODULE_KINDS:
        raise ToolArgError(f"'modules' must be one of {', '.join(MODULE_KINDS)}")
    return value


def _divergence(request: PairRequest, texts: list[str]) -> dict[str, Any]:
    payload, _ = per_token_divergence(request.pair(), texts, max_tokens=96)
    out = []
    for text in payload["texts"]:
        ranked = sorted(text["tokens"], key=lambda t: -t[1])[:8]
        out.append({"text": text["text"][:200], "most_divergent_after": [[t[0], round(t[1], 3)] for t in ranked],
                    "at_max": {"after": text["max"]["token"], "base_predicts": text["max"]["base_top"][:3],
                               "finetuned_predicts": text["max"]["ft_top"][:3]}})
    return {"mean_kl": round(payload["stats"]["mean_kl"], 4), "texts": out}


def _mining(request: PairRequest, texts: list[str]) -> dict[str, Any]:
    payload, _ = mine(request.pair(), texts, top_k=20, n_tokens=20, examples=1, max_tokens=96, n_topics=TOOL_TOPICS)
    return {"positions": payload["n_positions"],
            "tokens": [[t["token"], t["count"]] for t in payload["tokens"] if not t["trivial"]],
            "topics": [t["tokens"] for t in payload["topics"]]}


def _causal(request: PairRequest, texts: list[str]) -> dict[str, Any]:
    """Loss of base, finetune and patched finetune on the agent's texts beside a fixed generic reference."""
    pair = request.pair()
    generic = gather_texts(None, "generic:", GENERIC_REFERENCE, 0, pair.tokenizer)
    out = causal_check(pair, texts, generic, k=5, max_tokens=96)
    named = {"your_texts": out["sets"]["finetuning"], "generic_text": out["sets"]["generic"]}
    return {"layer": out["layer"], "patched_positions": out["k"],
            "loss": {name: {key: scope["all"][key] for key in ("base", "ft", "patched", "share_of_gain_removed")}
                     for name, scope in named.items()},
            "read": "ft < base on your texts (and not on generic text) means the finetune learned text like yours; "
                    "share_of_gain_removed is how much of that gain the first positions carry"}


def _direction(request: PairRequest, run: AdlRun, texts: list[str]) -> dict[str, Any]:
    """The paper's direction test at the run's middle layer on the agent's texts beside a fixed generic reference."""
    pair = request.pair()
    generic = gather_texts(None, "generic:", GENERIC_REFERENCE, 0, pair.tokenizer)
    layer = run.middle_layer
    row = run.mean_diff[run.layer_index(layer)]
    pos = strongest_position(row)
    with pair.use("base") as model:
        controls = {"random_vector": random_vectors(TOOL_CONTROLS, pair.d_model, 0),
                    "random_diff": random_diffs(model, generic, layer, TOOL_CONTROLS, 0, 96, 4)}
    test = DirectionTest(layer, {pos: row[pos]}, controls)
    out, _ = direction_effect(pair, {"your_texts": list(texts), "generic_text": list(generic)}, test, max_tokens=96)
    return {"layer": layer, "position": pos,
            "loss": {name: {key: s[key] for key in ("base", "ft", "intervened", "effect", "spread")}
                     for name, s in out["sets"].items()},
            "read": "effect is the loss change when the finetune's component along the activation difference is "
                    "set to the base model's at every token; compared with the spread of random directions, a large "
                    "rise on your texts means the finetune's skill on text like yours runs through that direction"}


def _positions(args: dict[str, Any], k: int) -> list[int]:
    value = args.get("positions")
    if (not isinstance(value, list) or not value or len(value) > k
            or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < k for v in value)):
        raise ToolArgError(f"'positions' must be 1 to {k} distinct integers between 0 and {k - 1}")
    return sorted(set(value))


def _pca(request: PairRequest, run: AdlRun, positions: list[int]) -> dict[str, Any]:
    """Top components of the per-text differences on generic text at the run's middle layer, per position."""
    pair = request.pair()
    generic = gather_texts(None, "generic:", PCA_REFERENCE, 0, pair.tokenizer)
    out = {}
    for pos in positions:
        payload, _ = difference_pca(pair, generic, run.middle_layer, pos, n_components=3, top_k=8)
        out[str(pos)] = {"mean_share": payload["mean_share"],
                         "components": [{"explained": c["explained_variance_ratio"],
                                         "plus": [t[0] for t in c["tokens"]],
                                         "minus": [t[0] for t in c["negative_tokens"]]}
                                        for c in payload["components"]]}
    return {"layer": run.middle_layer, "positions": out,
            "read": "each component is a direction along which texts' differences vary, with the tokens it reads "
                    "through the logit lens; mean_share is how much of the difference the mean alone explains"}


def lens_tools(request: PairRequest, run: AdlRun | None = None) -> list[Tool]:
    """Budgeted lens tools on `request`'s pair; amplification only when the finetune is a LoRA adapter; the
    direction test (which ablates the `run`'s mean diff) and the PCA (at its middle layer) only with an ADL run."""
    texts = {"type": "array", "items": {"type": "string"}, "x-hint": "[str]",
             "description": f"texts to read, at most {MAX_TEXTS}; each costs one model interaction"}
    obj = lambda required, **props: {"type": "object", "properties": props, "required": required}  # noqa: E731

    def run_divergence(env: AgentEnvironment, a: dict[str, Any]) -> dict[str, Any]:
        return _divergence(request, a["texts"])

    def run_mining(env: AgentEnvironment, a: dict[str, Any]) -> dict[str, Any]:
        return _mining(request, a["texts"])

    def run_causal(env: AgentEnvironment, a: dict[str, Any]) -> dict[str, Any]:
        return _causal(request, a["texts"])

    def run_pca(env: AgentEnvironment, a: dict[str, Any]) -> dict[str, Any]:
        assert run is not None
        return _pca(request, run, a["positions"])

    def run_direction(env: AgentEnvironment, a: dict[str, Any]) -> dict[str, Any]:
        assert run is not None
        return _direction(request, run, a["texts"])

    def run_amplify(env: AgentEnvironment, a: dict[str, Any]) -> dict[str, Any]:
        out = amplify(request.pair(), a["prompts"], a["factors"], max_new_tokens=64, scope=Scope(a["modules"]))
        return {"factors": out["factors"], "scaled": out["scope"], "rows": out["rows"]}

    tools: list[Tool] = [
        LensTool("token_divergence", "per-token KL between the finetuned and base next-token predictions on your "
                 "texts: where they disagree and what each model predicts there",
                 obj(["texts"], texts=texts), True, lambda a: {"texts": _strings(a, "texts")}, run_divergence),
        LensTool("diff_mining", "tokens the finetune most often pushes up (top-20 of finetuned − base log-probs) "
                 f"over your texts, with counts, and grouped into {TOOL_TOPICS} topics of tokens pushed up together",
                 obj(["texts"], texts=texts), True,
                 lambda a: {"texts": _strings(a, "texts")}, run_mining),
        LensTool("causal_check", "loss of base and finetuned model on texts you write (guesses at the finetuning "
                 "data) beside generic text, and how much of the finetune's gain goes away when its first 5 "
                 "positions get the base model's activations", obj(["texts"], texts=texts), True,
                 lambda a: {"texts": _strings(a, "texts")}, run_causal)]
    if run is not None:
        tools.append(LensTool(
            "direction_effect", "the loss of the finetune on texts you write (guesses at the finetuning data) and on "
            "generic text when its component along the activation difference is set to the base model's at every "
            f"token, beside {TOOL_CONTROLS} random-vector and {TOOL_CONTROLS} random-difference controls",
            obj(["texts"], texts=texts), True, lambda a: {"texts": _strings(a, "texts")}, run_direction))
        k = int(run.mean_diff.shape[1])
        tools.append(LensTool(
            "difference_pca", f"the top 3 principal components of the per-text activation differences on "
            f"{PCA_REFERENCE} generic texts at the middle layer, at each position you name, with the tokens each "
            "component reads both ways", obj(["positions"], positions={
                "type": "array", "items": {"type": "integer"}, "x-hint": "[int]",
                "description": f"positions 0 to {k - 1}; each costs one model interaction"}),
            True, lambda a: {"positions": _positions(a, k)}, run_pca, unit="positions"))
    if request.ft_spec.adapter:
        tools.append(LensTool(
            "amplify_adapter", "generate with the finetune's adapter scaled by each factor (2 = twice the change, "
            "-1 = reversed) in all modules or only the attention or MLP ones, beside base and plain finetune, greedy",
            obj(["prompts"], prompts={**texts, "description": "prompts, each costs one model interaction"},
                factors={"type": "array", "items": {"type": "number"}, "x-hint": "[float]",
                         "description": f"scales, at most {MAX_FACTORS}, default [2]"},
                modules={"type": "string", "enum": list(MODULE_KINDS), "x-hint": "str",
                         "description": "which modules to scale, default all"}),
            True, lambda a: {"prompts": _strings(a, "prompts"), "factors": _factors(a), "modules": _modules(a)},
            run_amplify, unit="prompts"))
    return tools
