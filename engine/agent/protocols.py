"""The agent's study protocols: what an agent may spend, how long and how hot the models answer it, and
how often its description is graded, as one named setting shared by the ADL agent and its baseline.

`default` is difflens's everyday run. `paper` is the paper's comparison as the authors' toolkit runs it
(science-of-finetuning/diffing-toolkit: `configs/diffing/evaluation.yaml` and the ADL method's `agent`
config): `ask_model` 1024 sampled tokens at T = 0.8, `generate_steered` 512 tokens at T = 1.0, up to 100
agent LLM calls and 100,000 generated tokens (agent temperature 0.7, 10,000 tokens per reply),
model-interaction budgets 0, 5 or 50, the grader run 3 times. Where difflens differs on purpose (median
instead of the toolkit's mean of the three grades) the README says so."""

from __future__ import annotations

from dataclasses import dataclass, replace

from engine.agent.budget import Budget
from engine.errors import UserError


@dataclass(frozen=True)
class Sampling:
    """Length and temperature of one kind of generation (0 = greedy)."""

    max_new_tokens: int
    temperature: float


@dataclass(frozen=True)
class AgentProtocol:
    """One protocol. `generate_steered` None = like the run's cached steering samples; `agent_llm` None =
    the configured LLM's own reply length and temperature; `fixed_budgets` None = any `--budget`, else the
    only model-interaction budgets allowed (and the LLM budget is fixed too)."""

    name: str
    ask_model: Sampling
    generate_steered: Sampling | None
    agent_llm: Sampling | None
    limits: Budget
    fixed_budgets: tuple[int, ...] | None
    grader_repeats: int

    def budget(self, model_interactions: int | None = None, llm_calls: int | None = None,
               tokens: int | None = None) -> Budget:
        """The limits of one run: the protocol's, with the caller's choices where the protocol allows them."""
        if self.fixed_budgets is not None:
            allowed = ", ".join(map(str, self.fixed_budgets))
            if model_interactions is not None and model_interactions not in self.fixed_budgets:
                raise UserError(f"--protocol {self.name} runs model-interaction budgets {allowed}, "
                                f"not {model_interactions}", f"pass --budget {allowed.replace(', ', ' | ')}")
            if llm_calls is not None or tokens is not None:
                raise UserError(f"--protocol {self.name} fixes the agent's LLM budget ({self.limits.llm_calls} "
                                f"calls, {self.limits.tokens:,} tokens)", "drop llm_calls and token_budget")
        limits = self.limits
        return replace(limits, model_interactions=limits.model_interactions if model_interactions is None
                       else model_interactions, llm_calls=limits.llm_calls if llm_calls is None else llm_calls,
                       tokens=limits.tokens if tokens is None else tokens)


PROTOCOLS = {
    "default": AgentProtocol("default", ask_model=Sampling(256, 0.8), generate_steered=None, agent_llm=None,
                             limits=Budget(), fixed_budgets=None, grader_repeats=1),
    "paper": AgentProtocol("paper", ask_model=Sampling(1024, 0.8), generate_steered=Sampling(512, 1.0),
                           agent_llm=Sampling(10_000, 0.7),
                           limits=Budget(llm_calls=100, tokens=100_000, generated_only=True),
                           fixed_budgets=(0, 5, 50), grader_repeats=3),
}


def protocol_named(name: str | None) -> AgentProtocol:
    """`default` (also for None) or `paper`; anything else is a `UserError` naming both."""
    protocol = PROTOCOLS.get(name or "default")
    if protocol is None:
        raise UserError(f"unknown agent protocol {name!r}", f"pass --protocol {' or '.join(PROTOCOLS)}")
    return protocol
