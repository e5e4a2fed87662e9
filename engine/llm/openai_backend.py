"""Any OpenAI-compatible chat-completions endpoint (OpenAI, OpenRouter, vLLM, llama.cpp, Ollama)."""

from __future__ import annotations

from typing import Any

import openai

from engine.llm.base import EventSink, LLMReply, TokenSink, ToolCall, estimate_tokens, price
from engine.llm.sdk import SdkChat


class OpenAIChat(SdkChat):
    """Chat completions with native tool calling; streams when asked to."""

    sdk = openai
    client_class = openai.OpenAI

    def chat(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None, *,
             on_token: TokenSink | None = None, on_event: EventSink | None = None) -> LLMReply:
        kwargs: dict[str, Any] = {"model": self.config.model, "messages": messages}
        if tools:
            kwargs["tools"] = tools
        if self.config.temperature is not None:
            kwargs["temperature"] = self.config.temperature
        limit_key = "max_completion_tokens" if self.config.base_url is None else "max_tokens"
        kwargs[limit_key] = self.config.max_tokens
        call = (lambda: self._stream(kwargs, on_token)) if on_token else (lambda: self._once(kwargs))
        reply = self._with_retries(call, on_event)
        if not reply.tokens_in and not reply.tokens_out:
            reply.tokens_in = estimate_tokens("".join(str(m.get("content") or "") for m in messages))
            reply.tokens_out = estimate_tokens(reply.text + "".join(c.arguments for c in reply.tool_calls))
            reply.tokens_estimated = True
        if reply.cost_usd is None:
            reply.cost_usd = price(reply.tokens_in, reply.tokens_out, self.config.price_in, self.config.price_out)
        return reply

    def _once(self, kwargs: dict[str, Any]) -> LLMReply:
        response = self._client.chat.completions.create(**kwargs)
        message = response.choices[0].message if response.choices else None
        calls = [ToolCall(tc.id or f"call_{i}", tc.function.name, tc.function.arguments or "")
                 for i, tc in enumerate((message.tool_calls if message else None) or [])
                 if getattr(tc, "function", None) is not None]
        reply = LLMReply(text=(message.content if message else None) or "", tool_calls=calls)
        self._usage(reply, response.usage)
        return reply

    def _stream(self, kwargs: dict[str, Any], on_token: TokenSink) -> LLMReply:
        stream = self._client.chat.completions.create(**kwargs, stream=True,
                                                      stream_options={"include_usage": True})
        parts: list[str] = []
        slots: dict[int, dict[str, str]] = {}
        usage = None
        for chunk in stream:
            usage = chunk.usage or usage
            for choice in chunk.choices:
                delta = choice.delta
                if delta.content:
                    parts.append(delta.content)
                    on_token(delta.content)
                for tc in delta.tool_calls or []:
                    slot = slots.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
                    slot["id"] = tc.id or slot["id"]
                    if tc.function is not None:
                        slot["name"] = tc.function.name or slot["name"]
                        slot["arguments"] += tc.function.arguments or ""
        calls = [ToolCall(s["id"] or f"call_{i}", s["name"], s["arguments"]) for i, s in sorted(slots.items())]
        reply = LLMReply(text="".join(parts), tool_calls=calls)
        self._usage(reply, usage)
        return reply

    @staticmethod
    def _usage(reply: LLMReply, usage: Any) -> None:
        if usage is None:
            return
        reply.tokens_in = int(usage.prompt_tokens or 0)
        reply.tokens_out = int(usage.completion_tokens or 0)
        cost = getattr(usage, "cost", None)
        reply.cost_usd = float(cost) if isinstance(cost, int | float) else None
