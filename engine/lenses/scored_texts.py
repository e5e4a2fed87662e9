"""Texts and chats as token ids with the targets whose loss counts (the causal test's scopes).

A plain text scores every token after BOS. A chat scores only the assistant's tokens, found as the reference
(diffing-toolkit `adl/causal_effect.py`, `_encode_chat`) finds them: each message's span is what rendering the chat
one message longer adds, and the spans of assistant messages are kept (their turn markers included).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from engine.corpus.chat import ASSISTANT, Messages, chat_ids
from engine.errors import UserError

Example = str | Messages


@dataclass(frozen=True)
class ScoredText:
    """Token ids (BOS first when the tokenizer has one) and, per token, whether predicting it counts."""

    ids: tuple[int, ...]
    scored: tuple[bool, ...]


@dataclass
class ScoredBatch:
    """Rows `lo .. lo + len(ids)` right-padded; `targets[b, t]` marks that the loss of predicting token t + 1
    from position t counts (a real, scored token)."""

    lo: int
    ids: Int[Tensor, "batch seq"]
    attention_mask: Int[Tensor, "batch seq"]
    targets: Bool[Tensor, "batch seq"]


def _with_bos(tokenizer: Any, ids: list[int]) -> list[int]:
    bos = tokenizer.bos_token_id
    return ids if bos is None or ids[:1] == [bos] else [bos, *ids]


def encode_plain(tokenizer: Any, text: str, max_tokens: int) -> ScoredText:
    """BOS + up to `max_tokens` tokens of the text, every token after BOS scored."""
    ids = _with_bos(tokenizer, tokenizer(text, add_special_tokens=False)["input_ids"])[: max_tokens + 1]
    return ScoredText(tuple(ids), (False, *(True,) * (len(ids) - 1)))


def encode_chat(tokenizer: Any, messages: Messages, max_tokens: int) -> ScoredText:
    """The rendered chat (truncated to BOS + `max_tokens`), scoring only the assistant messages' tokens."""
    full = _with_bos(tokenizer, chat_ids(tokenizer, messages, False))
    shift = len(full) - len(chat_ids(tokenizer, messages, False))
    scored = [False] * len(full)
    start = shift
    for i, message in enumerate(messages):
        end = shift + len(chat_ids(tokenizer, messages[: i + 1], False))
        if message.get("role") == ASSISTANT:
            scored[start:end] = [True] * (min(end, len(full)) - start)
        start = end
    keep = max_tokens + 1
    return ScoredText(tuple(full[:keep]), tuple(scored[:keep]))


def encode_examples(tokenizer: Any, examples: Sequence[Example], max_tokens: int, label: str) -> list[ScoredText]:
    """Each example encoded; a text set with no scored token at all is refused."""
    if max_tokens < 2:
        raise UserError(f"max_tokens must be at least 2, got {max_tokens}", "pass --max-tokens 32 or more")
    out = [encode_plain(tokenizer, e, max_tokens) if isinstance(e, str) else encode_chat(tokenizer, e, max_tokens)
           for e in examples]
    if not any(any(t.scored[1:]) for t in out):
        raise UserError(f"no {label} text has a token to score", "pass longer texts, or chats with an assistant turn")
    return out


def scored_batches(texts: Sequence[ScoredText], batch_size: int, pad_id: int) -> Iterator[ScoredBatch]:
    """Right-padded batches over `texts`, in order."""
    if batch_size <= 0:
        raise UserError(f"batch size must be positive, got {batch_size}", "pass --batch-size 4")
    for lo in range(0, len(texts), batch_size):
        chunk = texts[lo: lo + batch_size]
        seq = max(len(t.ids) for t in chunk)
        ids = torch.full((len(chunk), seq), pad_id, dtype=torch.long)
        scored = torch.zeros((len(chunk), seq + 1), dtype=torch.bool)
        lengths = torch.tensor([len(t.ids) for t in chunk])
        for row, text in enumerate(chunk):
            ids[row, : len(text.ids)] = torch.tensor(text.ids)
            scored[row, : len(text.ids)] = torch.tensor(text.scored)
        mask = (torch.arange(seq).unsqueeze(0) < lengths.unsqueeze(1)).long()
        yield ScoredBatch(lo, ids, mask, scored[:, 1:])
