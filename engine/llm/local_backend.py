"""`local:SPEC`: a chat model served by the engine itself, for boxes without internet.

It has no native tool calling, so the loop talks to it in the text grammar. The chat template is used
when the tokenizer has one; otherwise a plain `Role: text` transcript. A prompt longer than the model's
context window is `ContextOverflow` (the agent loop elides older results and asks again); the LLM timeout
bounds one reply's generation time (`max_time`: the reply is cut there, like one cut at `max_tokens`)."""

from __future__ import annotations

from typing import Any

import torch
from transformers import TextStreamer

from engine.llm.base import ContextOverflow, EventSink, LLMReply, TokenSink
from engine.llm.config import LLMConfig
from engine.models.adapters import adapter_enabled
from engine.models.cache import MODELS
from engine.models.device import resolve_placement
from engine.models.loading import LoadedModel
from engine.models.specs import parse_spec


class _Stream(TextStreamer):
    """Hands each decoded piece of new text to the token sink instead of printing it."""

    def __init__(self, tokenizer: Any, sink: TokenSink) -> None:
        super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
        self.sink = sink

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        if text:
            self.sink(text)


def _plain_prompt(messages: list[dict[str, Any]]) -> str:
    lines = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
    return "\n\n".join([*lines, "Assistant:"])


class LocalChat:
    """Greedy (or temperature-sampled) generation from an engine-loaded causal LM."""

    supports_tools = False
    secrets: tuple[str, ...] = ()

    def __init__(self, config: LLMConfig) -> None:
        self.config = config
        self.label = config.label()
        self.model: LoadedModel = MODELS.model(parse_spec(config.model), resolve_placement())

    def _encode(self, messages: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        tokenizer = self.model.tokenizer
        if getattr(tokenizer, "chat_template", None):
            history = [{"role": m["role"], "content": str(m["content"])} for m in messages]
            try:
                text = tokenizer.apply_chat_template(history, tokenize=False, add_generation_prompt=True)
            except Exception:  # templates that reject a system turn: fold it into the first user turn
                system = "\n\n".join(m["content"] for m in history if m["role"] == "system")
                rest = [m for m in history if m["role"] != "system"]
                if rest and system:
                    rest[0] = {"role": rest[0]["role"], "content": f"{system}\n\n{rest[0]['content']}"}
                text = tokenizer.apply_chat_template(rest, tokenize=False, add_generation_prompt=True)
            encoded = tokenizer(text, return_tensors="pt", add_special_tokens=False)
        else:
            encoded = tokenizer(_plain_prompt(messages), return_tensors="pt")
        return {k: v.to(self.model.input_device) for k, v in encoded.items() if k in ("input_ids", "attention_mask")}

    def chat(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None, *,
             on_token: TokenSink | None = None, on_event: EventSink | None = None) -> LLMReply:
        tokenizer = self.model.tokenizer
        inputs = self._encode(messages)
        window = getattr(self.model.hf.config, "max_position_embeddings", None)
        prompt_tokens = int(inputs["input_ids"].shape[1])
        if isinstance(window, int) and prompt_tokens + self.config.max_tokens > window:
            raise ContextOverflow(f"{self.label}: {prompt_tokens} prompt tokens + {self.config.max_tokens} reply "
                                  f"tokens exceed the context window of {window}",
                                  "shorten the history or pass a smaller --max-tokens")
        temperature = self.config.temperature
        sample = temperature is not None and temperature > 0
        with torch.inference_mode(), adapter_enabled(self.model, True):
            output = self.model.hf.generate(  # type: ignore[operator]  # GenerationMixin, not on PreTrainedModel
                **inputs, max_new_tokens=self.config.max_tokens, do_sample=sample,
                temperature=temperature if sample else None, top_p=None, top_k=None,
                pad_token_id=tokenizer.pad_token_id, max_time=self.config.timeout_s,
                streamer=_Stream(tokenizer, on_token) if on_token else None)
        new_ids = output[0, inputs["input_ids"].shape[1]:]
        text = tokenizer.decode(new_ids, skip_special_tokens=True)
        assert isinstance(text, str)  # one sequence decodes to one string
        return LLMReply(text=text, tokens_in=int(inputs["input_ids"].shape[1]), tokens_out=int(new_ids.numel()),
                        cost_usd=0.0)
