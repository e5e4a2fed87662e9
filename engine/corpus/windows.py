"""k-token windows: the token ids a forward pass needs and where the k read positions start.

Plain text: BOS + the first k tokens, read positions 1..k (`from_bos`: 0..k-1, the BOS first, as the reference
reads them). Chat: the conversation up to k tokens past the window start, which sits `chat_offset` tokens before
the assistant turn begins (the reference reads the tokens just before and the first tokens of the assistant turn).
Chats render through `engine.corpus.chat`, so a base without a chat template reads them as its chat organisms were
trained. Nothing past the window is ever tokenized into the batch, so no forward pass runs over whole documents.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Int
from torch import Tensor

from engine.corpus.chat import chat_ids
from engine.corpus.sources import Example
from engine.errors import UserError

CHAT_OFFSET = 3


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


def text_windows(tokenizer, texts: Sequence[str], k: int, from_bos: bool = False) -> tuple[list[Window], int]:
    """Windows for plain texts; returns (windows, number skipped for being shorter than k tokens)."""
    encoded = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    bos = _bos(tokenizer)
    start = 0 if from_bos else len(bos)
    windows = [Window(tuple(bos + ids[:k]), start) for ids in encoded if len(ids) >= k]
    return windows, len(encoded) - len(windows)


def chat_windows(tokenizer, conversations: Sequence[list[dict[str, str]]], k: int,
                 chat_offset: int = CHAT_OFFSET) -> tuple[list[Window], int]:
    """Windows around the start of the first assistant turn."""
    windows, skipped = [], 0
    for messages in conversations:
        first_assistant = next((i for i, m in enumerate(messages) if m.get("role") == "assistant"), None)
        if first_assistant is None:
            skipped += 1
            continue
        prompt = chat_ids(tokenizer, messages[:first_assistant], True)
        full = chat_ids(tokenizer, messages[: first_assistant + 1], False)
        start = max(0, len(prompt) - chat_offset)
        if len(full) < start + k:
            skipped += 1
            continue
        windows.append(Window(tuple(full[: start + k]), start))
    return windows, skipped


def make_windows(tokenizer, examples: Sequence[Example], k: int, from_bos: bool = False) -> tuple[list[Window], int]:
    texts = [e for e in examples if isinstance(e, str)]
    chats = [e for e in examples if isinstance(e, list)]
    windows, skipped = text_windows(tokenizer, texts, k, from_bos) if texts else ([], 0)
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
                on_batch: Callable[[int, int], None] = lambda done, total: None,
                from_bos: bool = False) -> list[Window]:
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
                windows.extend(Window(tuple(row.tolist()), 0 if from_bos else len(bos)) for row in out.cpu())
                on_batch(len(windows), n)
    finally:
        torch.random.set_rng_state(generator_state)
    return windows


def sample_chat(model, questions: Sequence[str], k: int, seed: int, chat_offset: int = CHAT_OFFSET,
                batch_size: int = 64, on_batch: Callable[[int, int], None] = lambda done, total: None) -> list[Window]:
    """`chat:` corpus: each question as a user turn, answered by the model itself for the window's assistant
    tokens (`k - chat_offset`, sampled with `seed`); the window starts `chat_offset` tokens before the answer."""
    prompts = [chat_ids(model.tokenizer, [{"role": "user", "content": q}], True) for q in questions]
    new = max(0, k - chat_offset)
    windows: list[Window] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for lo in range(0, len(prompts), batch_size):
            chunk = prompts[lo: lo + batch_size]
            answers = continuations(model, chunk, new, min_new_tokens=new) if new else [[] for _ in chunk]
            windows.extend(Window(tuple(prompt + answer), max(0, len(prompt) - chat_offset))
                           for prompt, answer in zip(chunk, answers, strict=True))
            on_batch(len(windows), len(prompts))
    return windows


def continuations(model, prompts: Sequence[list[int]], max_new_tokens: int, min_new_tokens: int = 0,
                  temperature: float = 1.0) -> list[list[int]]:
    """Each prompt's sampled continuation (the full distribution at `temperature`), in one left-padded
    `generate` call; the caller seeds. Rows that end early are padded up to the longest."""
    width = max(len(p) for p in prompts)
    pad = model.tokenizer.pad_token_id
    ids = torch.tensor([[pad] * (width - len(p)) + list(p) for p in prompts], device=model.input_device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=model.input_device)
    with torch.inference_mode():
        out = model.hf.generate(ids, attention_mask=mask, do_sample=True, temperature=temperature, top_k=0,
                                top_p=1.0, min_new_tokens=min_new_tokens, max_new_tokens=max_new_tokens,
                                pad_token_id=pad)
    return [row[width:] for row in out.cpu().tolist()]
