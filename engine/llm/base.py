"""What the agent loop needs from a chat model, whatever serves it.

Messages use the OpenAI chat shape (`role` system/user/assistant/tool, `content`, `tool_calls`,
`tool_call_id`); backends translate from it. A backend never raises for a reply it dislikes: it returns
the text and lets the loop's parsers judge."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from engine.errors import UserError

TokenSink = Callable[[str], None]
EventSink = Callable[[dict[str, Any]], object]  # what it returns is ignored


@dataclass(frozen=True)
class ToolCall:
    """One native tool call; `arguments` is the raw JSON text (the loop parses it, so bad JSON is its error)."""

    id: str
    name: str
    arguments: str


@dataclass
class LLMReply:
    text: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float | None = None
    tokens_estimated: bool = False

    def assistant_message(self) -> dict[str, Any]:
        """The reply as the next request's history entry."""
        message: dict[str, Any] = {"role": "assistant", "content": self.text}
        if self.tool_calls:
            message["tool_calls"] = [{"id": c.id, "type": "function",
                                      "function": {"name": c.name, "arguments": c.arguments}}
                                     for c in self.tool_calls]
        return message


class ContextOverflow(UserError):
    """The request is longer than the model's context window; the agent loop shortens its history and asks again."""


class ChatLLM(Protocol):
    """A chat model the agent (or the grader) talks to."""

    label: str
    supports_tools: bool
    secrets: tuple[str, ...]

    def chat(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None, *,
             on_token: TokenSink | None = None, on_event: EventSink | None = None) -> LLMReply:
        """One completion. `on_token` receives streamed text; `on_event` retry notices."""
        ...


def estimate_tokens(text: str) -> int:
    """Rough count for servers that report no usage (about four characters a token)."""
    return max(1, len(text) // 4)


def price(tokens_in: int, tokens_out: int, price_in: float | None, price_out: float | None) -> float | None:
    """USD cost from per-million-token prices, when the user configured them."""
    if price_in is None or price_out is None:
        return None
    return round((tokens_in * price_in + tokens_out * price_out) / 1e6, 6)
