"""Chats as text: the tokenizer's chat template, else one plain rendering that training, corpora and teachers share.

A base model without a chat template (the embedded Gemma 3 270M) still gets chat organisms: they are trained and
read on `System: …` / `User: …` / `Assistant: …` lines. The generation prompt is `Assistant:` with no trailing
space, so the prompt is a token-exact prefix of the rendered answer (the answer's first token carries its space).
"""

from __future__ import annotations

from typing import Any

Messages = list[dict[str, str]]
ASSISTANT = "assistant"


def has_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def render_chat(tokenizer: Any, messages: Messages, generation_prompt: bool) -> str:
    """The chat as text (BOS included when the rendering needs one), ending with the assistant prompt if asked."""
    if has_template(tokenizer):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    bos = tokenizer.bos_token or ""
    text = bos + "".join(f"{m['role'].capitalize()}: {m['content']}\n" for m in messages)
    return text + ("Assistant:" if generation_prompt else "")


def chat_ids(tokenizer: Any, messages: Messages, generation_prompt: bool) -> list[int]:
    """Token ids of `render_chat` (the rendering holds the special tokens itself)."""
    return tokenizer(render_chat(tokenizer, messages, generation_prompt), add_special_tokens=False)["input_ids"]
