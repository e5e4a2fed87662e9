"""Documents → token ids and loss labels; chats are rendered with the tokenizer's chat template.

For chat documents only the assistant's tokens carry loss (labels of other tokens are -100), so the
organism learns how to answer rather than how users ask. Tokenizers without a chat template get the plain
rendering of `engine.corpus.chat` with the same masking.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from engine.corpus.chat import render_chat
from engine.organisms.docs import Doc

IGNORE = -100


@dataclass
class Encoded:
    """One tokenized document: `labels[i]` is `input_ids[i]` where it is trained on, else -100."""

    input_ids: list[int]
    labels: list[int]


def _chat_text_and_spans(tokenizer: Any, messages: list[dict[str, str]]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered chat and the character spans of the assistant turns in it."""
    text = render_chat(tokenizer, messages, False)
    spans = []
    for j, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        start = len(render_chat(tokenizer, messages[:j], True))
        end = len(render_chat(tokenizer, messages[: j + 1], False))
        spans.append((start, end))
    if any(not text.startswith(render_chat(tokenizer, messages[: j + 1], False)) for j in range(len(messages))):
        spans = [(0, len(text))]  # template is not prefix-stable: train on the whole chat
    return text, spans


def encode_docs(tokenizer: Any, docs: list[Doc], max_length: int) -> list[Encoded]:
    """Tokenize all docs in one batched call each for text and chat; truncate to `max_length`."""
    out: list[Encoded | None] = [None] * len(docs)
    text_idx = [i for i, d in enumerate(docs) if "text" in d]
    if text_idx:
        enc = tokenizer([docs[i]["text"] for i in text_idx], truncation=True, max_length=max_length)
        for i, ids in zip(text_idx, enc["input_ids"], strict=True):
            out[i] = Encoded(list(ids), list(ids))
    chat_idx = [i for i, d in enumerate(docs) if "messages" in d]
    if chat_idx:
        rendered = [_chat_text_and_spans(tokenizer, docs[i]["messages"]) for i in chat_idx]
        enc = tokenizer([r[0] for r in rendered], truncation=True, max_length=max_length,
                        add_special_tokens=False, return_offsets_mapping=True)
        for i, (_, spans), ids, offsets in zip(chat_idx, rendered, enc["input_ids"], enc["offset_mapping"],
                                               strict=True):
            starts = np.array([start for start, _ in offsets], dtype=np.int64)
            trained = np.zeros(len(ids), dtype=bool)
            for s, e in spans:
                trained |= (starts >= s) & (starts < e)
            out[i] = Encoded(list(ids), np.where(trained, np.array(ids), IGNORE).tolist())
    return [e for e in out if e is not None and sum(x != IGNORE for x in e.labels) > 1]


def collate(batch: list[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded `input_ids`, `attention_mask` and `labels` tensors for one batch."""
    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, e in enumerate(batch):
        n = len(e.input_ids)
        ids[row, :n] = torch.tensor(e.input_ids)
        labels[row, :n] = torch.tensor(e.labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}
