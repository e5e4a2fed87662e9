"""What the agent is told: its job, its evidence, its tools, its budgets and how to answer."""

from __future__ import annotations

import json
from typing import Any

from engine.agent.tools import Mode, Tool

_JOB = """You are an interpretability agent. You study two language models: a base model and a copy of it
that was finetuned on data you cannot see. Work out what the finetuning was about: the domain of the
training data and the behaviour it changed. Name specifics (topics, facts, a persona, a rule, a secret,
a preference) rather than broad areas."""

_ADL_EVIDENCE = """Your evidence
The first user message holds an OVERVIEW (JSON). It was computed from the Activation Difference Lens:
the mean difference between the finetuned and the base model's residual-stream activations on the first
few tokens of ordinary text, at one layer (`layer`, out of `n_layers`), per token position.
- logit_lens: tokens the difference favours when read out through the model's unembedding.
- patchscope: tokens the model produces when the difference is placed into a neutral identity prompt;
  `selected` is a small coherent group picked automatically, which may or may not matter.
- steering: the finetuned model continuing a prompt with the difference added to its activations
  (steered) next to the same prompt without it (unsteered), cut to 128 characters. Steering tends to
  make the finetune's topic surface even where plain text hides it.
Positions count tokens after the start-of-text token; position 0 often carries an odd, large vector."""

_BASELINE_EVIDENCE = """Your evidence
The first user message holds an OVERVIEW (JSON) of plain generations from the finetuned model on a few
prompts (cut to 128 characters). Beyond that, you can only question the models."""

_WEIGHING = """Weighing evidence
- Trust content words (names, domain terms, technical nouns, distinctive phrasing) over stopwords,
  punctuation, markup, code fragments and other frequent filler tokens.
- Trust patterns that repeat: across positions, across readouts, and in the steered samples.
- Do not build on a single odd token. Verify a hypothesis with prompts on which the base and the
  finetuned model should answer differently, and say what the answers mean."""

_METHOD = """How to work
1. Read the overview and write down candidate hypotheses.
2. Record each hypothesis with hypothesis_tracking ({"action": "add", "hypothesis": "..."}); the user
   watches the board.
3. Test the leading hypotheses with the tools, using your model interactions wisely, and update each
   one's status with your reasoning ({"action": "update", "id": 1, "status": "confirmed"|"rejected",
   "reasoning": "..."}).
4. Before your final answer, review the board ({"action": "get"}) so that no active hypothesis is left
   uninvestigated. Stop when one hypothesis clearly wins, or when the budgets run out."""

_BUDGETS = """Budgets
- model interactions: each prompt you send to ask_model or generate_steered spends one; free tools
  spend none. A call that would overspend is refused and not run.
- your own LLM calls and tokens. Every tool result states what is left. When your calls run out you
  will be asked for your final answer at once."""

_FINAL = """Final answer
FINAL(description: "...") with, in this order: one sentence naming the domain and the behaviour; the
specifics you found; the key evidence (tokens, samples, model answers); caveats. If you cannot decide,
answer FINAL(description: "Inconclusive. Candidates: A; B. Why undecided: ... Evidence: ...")."""

_NATIVE = """Protocol
Call tools through the tool-calling interface. When you are done, reply in plain text whose last line is
FINAL(description: "...") (one JSON string; write line breaks as \\n)."""

_TEXT = """Protocol
Think briefly, then end your reply with exactly one action on its own last line:
  CALL(tool_name: {"arg": value, ...})      (valid JSON arguments on one line, one tool per reply)
  FINAL(description: "...")                 (one JSON string; write line breaks as \\n)
Do not write a tool call in any other form. A worked example of one whole reply:
  The overview mentions travel twice. I will ask the models about holidays.
  CALL(ask_model: {"prompts": ["Where should I go on holiday?"]})
and of a last reply:
  FINAL(description: "Travel advice: the finetune recommends one destination. Evidence: ...")"""


def system_prompt(mode: Mode, tools: dict[str, Tool], native: bool) -> str:
    """The system message for `mode`, listing exactly the tools offered."""
    evidence = _ADL_EVIDENCE if mode == "adl" else _BASELINE_EVIDENCE
    tool_lines = "Tools (JSON arguments)\n" + "\n".join(t.signature() for t in tools.values())
    parts = [_JOB, evidence, tool_lines, _BUDGETS, _WEIGHING if mode == "adl" else "", _METHOD, _FINAL,
             _NATIVE if native else _TEXT]
    return "\n\n".join(p for p in parts if p)


MANY_INTERACTIONS = 20  # above this the agent is told to explore broadly first, as the authors' toolkit does
_EXPLORE = (" You have many model interactions: start with a broad round of 10–20 questions to the models, "
            "and use most of your interactions before you answer.")


def first_message(overview: dict[str, Any], budget_left: dict[str, int]) -> str:
    """The overview plus the opening budgets (and, with a large interaction budget, the advice to use it)."""
    explore = _EXPLORE if budget_left.get("model_interactions_left", 0) > MANY_INTERACTIONS else ""
    return (f"OVERVIEW:\n{json.dumps(overview, ensure_ascii=False)}\n\nBUDGETS: {json.dumps(budget_left)}\n\n"
            f"Form your hypotheses from the overview, then test them.{explore}")


FINAL_NOW = ("Your LLM budget is used up. Reply now with your final answer as the last line: "
             'FINAL(description: "..."). If you are unsure, start it with "Inconclusive." and name the '
             "candidates. No more tool calls will be run.")
