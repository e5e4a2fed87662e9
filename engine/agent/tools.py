"""The agent's tools: names, JSON schemas (for native tool calling and the prompt), argument checks and
costs. Bad arguments raise `ToolArgError`, which goes back to the agent as an error result."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from engine.agent.environment import AgentEnvironment
from engine.agent.hypotheses import BoardError, HypothesisBoard

Mode = Literal["adl", "baseline"]

MAX_K = 30
MAX_STEERING_SAMPLES = 5
MAX_POSITIONS = 16
MAX_PROMPT_CHARS = 2000


class ToolArgError(ValueError):
    """The agent called a tool with arguments it does not take."""


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    budgeted: bool
    check: Callable[[dict[str, Any]], dict[str, Any]]
    run: Callable[[AgentEnvironment, dict[str, Any]], dict[str, Any]]

    def cost(self, args: dict[str, Any]) -> int:
        """Model interactions this call spends: one per prompt for the budgeted tools."""
        return len(args["prompts"]) if self.budgeted else 0

    def schema(self) -> dict[str, Any]:
        """OpenAI-style function schema (the Anthropic backend converts it)."""
        props = {name: {k: v for k, v in spec.items() if k != "x-hint"}
                 for name, spec in self.parameters["properties"].items()}
        return {"type": "function",
                "function": {"name": self.name, "description": self.description,
                             "parameters": {**self.parameters, "properties": props}}}

    def signature(self) -> str:
        """One prompt line naming the arguments, for the text grammar."""
        props = self.parameters["properties"]
        args = ", ".join(f'"{name}": {spec.get("x-hint", spec["type"])}' for name, spec in props.items())
        cost = "budgeted: 1 model interaction per prompt" if self.budgeted else "free"
        return f"- {self.name} {{{args}}} ({cost}) — {self.description}"


def _int(args: dict[str, Any], name: str, lo: int, hi: int | None = None) -> int:
    value = args.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ToolArgError(f"{name!r} must be an integer")
    if value < lo or (hi is not None and value > hi):
        raise ToolArgError(f"{name!r} must be between {lo} and {hi}" if hi is not None
                           else f"{name!r} must be at least {lo}")
    return value


def _ints(args: dict[str, Any], name: str) -> list[int]:
    value = args.get(name)
    if (not isinstance(value, list) or not value
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)):
        raise ToolArgError(f"{name!r} must be a non-empty list of non-negative integers")
    if len(value) > MAX_POSITIONS:
        raise ToolArgError(f"{name!r} may hold at most {MAX_POSITIONS} entries")
    return value


def _prompts(args: dict[str, Any]) -> list[str]:
    value = args.get("prompts")
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise ToolArgError("'prompts' must be a non-empty list of non-empty strings")
    if any(len(v) > MAX_PROMPT_CHARS for v in value):
        raise ToolArgError(f"each prompt may be at most {MAX_PROMPT_CHARS} characters")
    return value


def _strength(args: dict[str, Any]) -> float | None:
    value = args.get("strength")
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        raise ToolArgError("'strength' must be a positive number or null (the cached coherent strength)")
    return float(value)


_LAYER = {"type": "integer", "description": "absolute decoder layer (0-indexed)"}
_POSITIONS = {"type": "array", "items": {"type": "integer"}, "x-hint": "[int]",
              "description": "token positions after BOS (0-indexed)"}
_K = {"type": "integer", "description": f"tokens per position, at most {MAX_K}"}
_PROMPTS = {"type": "array", "items": {"type": "string"}, "x-hint": "[str]",
            "description": "prompts, each costs one model interaction"}


def _obj(required: list[str], **props: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": required}


def _layer_positions_k(args: dict[str, Any]) -> dict[str, Any]:
    return {"layer": _int(args, "layer", 0), "positions": _ints(args, "positions"),
            "k": _int(args, "k", 1, MAX_K) if "k" in args else 10}


LOGITLENS = Tool(
    "get_logitlens_details",
    "cached logit-lens tokens (with probabilities) of the activation difference per position",
    _obj(["layer", "positions"], layer=_LAYER, positions=_POSITIONS, k=_K), False, _layer_positions_k,
    lambda env, a: env.logitlens_details(a["layer"], a["positions"], a["k"]))
PATCHSCOPE = Tool(
    "get_patchscope_details",
    "cached Patchscope tokens of the activation difference per position, with the selected coherent ones",
    _obj(["layer", "positions"], layer=_LAYER, positions=_POSITIONS, k=_K), False, _layer_positions_k,
    lambda env, a: env.patchscope_details(a["layer"], a["positions"], a["k"]))
STEERING = Tool(
    "get_steering_samples",
    f"cached full-length steered vs unsteered generations, up to {MAX_STEERING_SAMPLES} per prompt",
    _obj(["layer", "position"], layer=_LAYER, position={"type": "integer", "description": "token position"},
         n={"type": "integer", "description": f"samples per prompt, at most {MAX_STEERING_SAMPLES}"}),
    False,
    lambda a: {"layer": _int(a, "layer", 0), "position": _int(a, "position", 0),
               "n": _int(a, "n", 1, MAX_STEERING_SAMPLES) if "n" in a else MAX_STEERING_SAMPLES},
    lambda env, a: env.steering_samples(a["layer"], a["position"], a["n"]))
ASK_MODEL = Tool(
    "ask_model",
    "ask the base and the finetuned model the same prompts; answers come back side by side",
    _obj(["prompts"], prompts=_PROMPTS), True, lambda a: {"prompts": _prompts(a)},
    lambda env, a: env.ask_model(a["prompts"]))
GENERATE_STEERED = Tool(
    "generate_steered",
    "generate from the finetuned model steered with the difference at (layer, position); "
    "strength null uses the cached coherent strength",
    _obj(["layer", "position", "prompts"], layer=_LAYER,
         position={"type": "integer", "description": "token position whose difference steers"},
         prompts=_PROMPTS, strength={"type": ["number", "null"], "x-hint": "float|null",
                                     "description": "steering strength; null for the default"}),
    True,
    lambda a: {"layer": _int(a, "layer", 0), "position": _int(a, "position", 0), "prompts": _prompts(a),
               "strength": _strength(a)},
    lambda env, a: env.generate_steered(a["layer"], a["position"], a["prompts"], a["strength"]))
HYPOTHESIS_TRACKING_NAME = "hypothesis_tracking"


def hypothesis_tracking(board: HypothesisBoard) -> Tool:
    """The reference agent's free `hypothesis_tracking` tool over one run's board."""

    def run(env: AgentEnvironment, args: dict[str, Any]) -> dict[str, Any]:
        try:
            return board.apply(args)
        except BoardError as exc:
            raise ToolArgError(str(exc)) from None

    return Tool(
        HYPOTHESIS_TRACKING_NAME,
        "track your hypotheses: add one or more, update one by id (status active, confirmed or rejected, with "
        "your reasoning), or get the board; every action returns the whole board",
        _obj(["action"], action={"type": "string", "enum": ["add", "update", "get"], "x-hint": '"add"|"update"|"get"'},
             hypothesis={"type": "string", "description": "add: one hypothesis"},
             hypotheses={"type": "array", "items": {"type": "string"}, "x-hint": "[str]",
                         "description": "add: several hypotheses"},
             id={"type": "integer", "description": "update: the hypothesis id"},
             status={"type": "string", "enum": ["active", "confirmed", "rejected"],
                     "x-hint": '"active"|"confirmed"|"rejected"'},
             reasoning={"type": "string", "description": "update: why"}),
        False, dict, run)


ADL_TOOLS = [LOGITLENS, PATCHSCOPE, STEERING, ASK_MODEL, GENERATE_STEERED]
BASELINE_TOOLS = [ASK_MODEL]


def tools_for(mode: Mode, board: HypothesisBoard) -> dict[str, Tool]:
    """The ADL agent gets every tool; the baseline only talks to the models; both track hypotheses."""
    return {t.name: t for t in (*(ADL_TOOLS if mode == "adl" else BASELINE_TOOLS), hypothesis_tracking(board))}
