"""The agent's two budgets: model interactions (what it may ask of the models) and its own LLM calls and
tokens (what it may spend thinking). The loop, not the agent, enforces both."""

from __future__ import annotations

from dataclasses import dataclass

from engine.errors import UserError


@dataclass(frozen=True)
class Budget:
    """Limits for one agent run; one prompt in `ask_model`/`generate_steered` is one model interaction.
    `tokens` counts prompt and reply tokens, or only the replies when `generated_only` (the toolkit's
    `token_budget_generated`)."""

    model_interactions: int = 5
    llm_calls: int = 30
    tokens: int = 400_000
    generated_only: bool = False

    def __post_init__(self) -> None:
        if self.model_interactions < 0:
            raise UserError("the model-interaction budget is negative", "pass --budget 0 or more")
        if self.llm_calls < 1:
            raise UserError("the agent needs at least one LLM call", "pass llm_calls of 1 or more")
        if self.tokens < 1:
            raise UserError("the agent's token budget must be positive", "pass a token budget of 1 or more")


@dataclass
class BudgetState:
    """What has been spent so far, and what that leaves."""

    limits: Budget
    interactions_used: int = 0
    llm_calls_used: int = 0
    tokens_used: int = 0

    @property
    def interactions_left(self) -> int:
        return self.limits.model_interactions - self.interactions_used

    def can_spend(self, interactions: int) -> bool:
        return interactions <= self.interactions_left

    def spend(self, interactions: int) -> None:
        self.interactions_used += interactions

    def record_call(self, tokens_in: int, tokens_out: int) -> None:
        self.llm_calls_used += 1
        self.tokens_used += tokens_out if self.limits.generated_only else tokens_in + tokens_out

    def final_call_due(self) -> bool:
        """True when the next LLM call must be the last one (it is reserved for the final answer)."""
        return (self.llm_calls_used >= self.limits.llm_calls - 1
                or self.tokens_used >= self.limits.tokens)

    def left(self) -> dict[str, int]:
        """The line every tool result carries, so the agent can plan."""
        return {"model_interactions_left": self.interactions_left,
                "llm_calls_left": self.limits.llm_calls - self.llm_calls_used,
                "tokens_left": max(0, self.limits.tokens - self.tokens_used)}
