"""LLM backends for the agent and the grader: `openai:MODEL`, `anthropic:MODEL`, `local:SPEC`."""

from __future__ import annotations

from engine.agent.llm.base import ChatLLM, LLMReply, ToolCall
from engine.agent.llm.config import LLMConfig, resolve_config

__all__ = ["ChatLLM", "LLMConfig", "LLMReply", "ToolCall", "make_llm", "resolve_config"]


def make_llm(config: LLMConfig) -> ChatLLM:
    """The backend for `config.provider` (imports only the client it needs)."""
    if config.provider == "anthropic":
        from engine.agent.llm.anthropic_backend import AnthropicChat

        return AnthropicChat(config)
    if config.provider == "local":
        from engine.agent.llm.local_backend import LocalChat

        return LocalChat(config)
    from engine.agent.llm.openai_backend import OpenAIChat

    return OpenAIChat(config)
