"""k-token windows: the token ids a forward pass needs and where the k read positions start.

Plain text: BOS + the first k tokens, read positions 1..k. Chat: the conversation up to k tokens past the
window start, which sits `chat_offset` tokens before the assistant turn begins (the reference uses 3).
Nothing past the window is ever tokenized into the batch, so no forward pass runs over whole documents.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Int
from torch import Tensor

from engine.corpus.sources import Example
from engine.errors import UserError


@dataclass(frozen=True)
class Window:
    ids: tuple[int, ...]
    start: int


@dataclass
class Batch:
    """Right-padded ids (causal models read pads only after the window, so outputs are unchanged)."""

    input_ids: Int[Tensor, "batch seq"]
    attention_mask: Int[Tensor, "batch seq"]
    positions: Int[Tensor, "batch pos"]


def _bos(tokenizer) -> list[int]:
    return [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []


def text_windows(tokenizer, texts: Sequence[str], k: int) -> tuple[list[Window], int]:
    """Windows for plain texts; returns (windows, number skipped for being shorter than k tokens)."""
    encoded = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    bos = _bos(tokenizer)
    windows = [Window(tuple(bos + ids[:k]), len(bos)) for ids in encoded if len(ids) >= k]
    return windows, len(encoded) - len(windows)


def chat_windows(tokenizer, conversations: Sequence[list[dict[str, str]]], k: int,
                 chat_offset: int = 3) -> tuple[list[Window], int]:
    """Windows around the start of the first assistant turn."""
    if not getattr(tokenizer, "chat_template", None):
        raise UserError("the corpus holds chat messages but the tokenizer has no chat template",
                        "use a chat model, or a plain-text corpus")
    windows, skipped = [], 0
    for messages in conversations:
        first_assistant = next((i for i, m in enumerate(messages) if m.get("role") == "assistant"), None)
        if first_assistant is None:
            skipped += 1
            continue
        prompt = tokenizer.apply_chat_template(messages[:first_assistant], add_generation_prompt=True,
                                               tokenize=True, return_dict=False)
        full = tokenizer.apply_chat_template(messages[: first_assistant + 1], tokenize=True, return_dict=False)
        start = max(0, len(prompt) - chat_offset)
        if len(full) < start + k:
            skipped += 1
            continue
        windows.append(Window(tuple(full[: start + k]), start))
    return windows, skipped


def make_windows(tokenizer, examples: Sequence[Example], k: int) -> tuple[list[Window], int]:
    texts = [e for e in examples if isinstance(e, str)]
    chats = [e for e in examples if isinstance(e, list)]
    windows, skipped = text_windows(tokenizer, texts, k) if texts else ([], 0)
    if chats:
        more, more_skipped = chat_windows(tokenizer, chats, k)
        windows, skipped = windows + more, skipped + more_skipped
    return windows, skipped


def batches(windows: Sequence[Window], k: int, batch_size: int, pad_id: int) -> Iterator[tuple[int, Batch]]:
    """Yield (batch index, Batch) over `windows` in order."""
    for index, lo in enumerate(range(0, len(windows), batch_size)):
        chunk = windows[lo: lo + batch_size]
        seq = max(len(w.ids) for w in chunk)
        ids = torch.full((len(chunk), seq), pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), seq), dtype=torch.long)
        for row, window in enumerate(chunk):
            ids[row, : len(window.ids)] = torch.tensor(window.ids)
            mask[row, : len(window.ids)] = 1
        starts = torch.tensor([w.start for w in chunk]).unsqueeze(1)
        yield index, Batch(ids, mask, starts + torch.arange(k).unsqueeze(0))


def sample_self(model, n: int, k: int, seed: int, batch_size: int = 64,
                on_batch: Callable[[int, int], None] = lambda done, total: None) -> list[Window]:
    """`self:` corpus: n texts sampled from the model itself starting at BOS (no data needed offline).

    `on_batch(done, n)` runs after every batch: a job reports progress there and a cancel takes effect."""
    tokenizer, hf = model.tokenizer, model.hf
    bos = _bos(tokenizer)
    if not bos:
        raise UserError(f"{model.spec.label()} has no BOS token to sample from",
                        "pass --corpus with a text file or dataset")
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    windows: list[Window] = []
    try:
        with torch.inference_mode():
            for lo in range(0, n, batch_size):
                rows = min(batch_size, n - lo)
                prompt = torch.tensor([bos] * rows, device=model.input_device)
                out = hf.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=True,
                                  temperature=1.0, top_k=0, top_p=1.0, min_new_tokens=k, max_new_tokens=k,
                                  pad_token_id=tokenizer.pad_token_id)
                windows.extend(Window(tuple(row.tolist()), len(bos)) for row in out.cpu())
                on_batch(len(windows), n)
    finally:
        torch.random.set_rng_state(generator_state)
    return windows
