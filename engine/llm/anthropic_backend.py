"""Anthropic's Messages API, translated to and from the loop's OpenAI-shaped history."""

from __future__ import annotations

import json
from typing import Any

import anthropic

from engine.llm.base import EventSink, LLMReply, TokenSink, ToolCall, price
from engine.llm.sdk import SdkChat


def _arguments(text: str) -> Any:
    try:
        value = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def to_anthropic(messages: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """(system text, alternating user/assistant turns); tool results ride in user turns as blocks."""
    system = "\n\n".join(str(m["content"]) for m in messages if m["role"] == "system")
    turns: list[dict[str, Any]] = []
    for m in messages:
        if m["role"] == "system":
            continue
        if m["role"] == "assistant":
            blocks: list[dict[str, Any]] = [{"type": "text", "text": m["content"]}] if m.get("content") else []
            blocks += [{"type": "tool_use", "id": c["id"], "name": c["function"]["name"],
                        "input": _arguments(c["function"]["arguments"])} for c in m.get("tool_calls", [])]
            role, content = "assistant", blocks or [{"type": "text", "text": "(no reply)"}]
        elif m["role"] == "tool":
            role, content = "user", [{"type": "tool_result", "tool_use_id": m["tool_call_id"],
                                      "content": str(m["content"])}]
        else:
            role, content = "user", [{"type": "text", "text": str(m["content"])}]
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(content)
        else:
            turns.append({"role": role, "content": list(content)})
    return system, turns


def _tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"name": t["function"]["name"], "description": t["function"]["description"],
             "input_schema": t["function"]["parameters"]} for t in tools]


class AnthropicChat(SdkChat):
    """Claude models with native tool use; streams when asked to."""

    sdk = anthropic
    client_class = anthropic.Anthropic

    def chat(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None, *,
             on_token: TokenSink | None = None, on_event: EventSink | None = None) -> LLMReply:
        system, turns = to_anthropic(messages)
        kwargs: dict[str, Any] = {"model": self.config.model, "max_tokens": self.config.max_tokens,
                                  "messages": turns}
        if system:
            kwargs["system"] = system
        if tools:
            kwargs["tools"] = _tools(tools)
        if self.config.temperature is not None:
            kwargs["temperature"] = self.config.temperature
        message = self._with_retries(lambda: self._call(kwargs, on_token), on_event)
        text = "".join(b.text for b in message.content if b.type == "text")
        calls = [ToolCall(b.id, b.name, json.dumps(b.input)) for b in message.content if b.type == "tool_use"]
        tokens_in, tokens_out = message.usage.input_tokens, message.usage.output_tokens
        return LLMReply(text=text, tool_calls=calls, tokens_in=tokens_in, tokens_out=tokens_out,
                        cost_usd=price(tokens_in, tokens_out, self.config.price_in, self.config.price_out))

    def _call(self, kwargs: dict[str, Any], on_token: TokenSink | None) -> Any:
        if on_token is None:
            return self._client.messages.create(**kwargs)
        with self._client.messages.stream(**kwargs) as stream:
            for text in stream.text_stream:
                on_token(text)
            return stream.get_final_message()
