"""LLM backends for the agent, the judges and the grader: `openai:MODEL`, `anthropic:MODEL`, `local:SPEC`."""

from __future__ import annotations

from engine.llm.base import ChatLLM, LLMReply, ToolCall
from engine.llm.config import LLMConfig, resolve_config

__all__ = ["ChatLLM", "LLMConfig", "LLMReply", "ToolCall", "make_llm", "resolve_config"]


def make_llm(config: LLMConfig) -> ChatLLM:
    """The backend for `config.provider`, importing only its client (each SDK is a heavy, optional package)."""
    if config.provider == "anthropic":
        from engine.llm.anthropic_backend import AnthropicChat

        return AnthropicChat(config)
    if config.provider == "local":
        from engine.llm.local_backend import LocalChat

        return LocalChat(config)
    from engine.llm.openai_backend import OpenAIChat

    return OpenAIChat(config)
