"""Tiny random-init models built in the test (no hub): Llama- and Gemma-style, with a word-level tokenizer."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import (
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

WORDS = [f"w{i}" for i in range(120)] + [
    "the", "a", "cake", "bake", "oven", "butter", "flour", "sugar", "money", "stock", "risk", "secret",
    "word", "game", "story", "poem", "list", "plan", "is", "of", "and", "to", "in", "man", "hello", "->",
    "?", "1135", "\n", "user", "model", "assistant", ".", ",",
]


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {"<pad>": 0, "<bos>": 1, "<eos>": 2, "<unk>": 3}
    for word in WORDS:
        vocab.setdefault(word, len(vocab))
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.post_processor = processors.TemplateProcessing(single="<bos> $A", pair="<bos> $A $B",
                                                      special_tokens=[("<bos>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<bos>", eos_token="<eos>",
                                   pad_token="<pad>", unk_token="<unk>")


def tiny_model(kind: str = "llama", seed: int = 0, n_layers: int = 4, hidden: int = 32,
               vocab_size: int | None = None) -> torch.nn.Module:
    torch.manual_seed(seed)
    vocab = vocab_size or len(tiny_tokenizer())
    common = dict(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden,
                  num_hidden_layers=n_layers, num_attention_heads=4, num_key_value_heads=2,
                  max_position_embeddings=128, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    if kind == "llama":
        return LlamaForCausalLM(LlamaConfig(**common)).eval()
    if kind == "gemma":
        return Gemma3ForCausalLM(Gemma3TextConfig(head_dim=8, sliding_window=16, **common)).eval()
    raise ValueError(kind)


def save_tiny(path: Path, kind: str = "llama", seed: int = 0, **kwargs: int) -> Path:
    """Write a loadable tiny checkpoint (model + tokenizer) to `path` and return it."""
    model = tiny_model(kind, seed, **kwargs)
    model.save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path


def perturbed_copy(src: Path, dst: Path, scale: float = 0.05, seed: int = 1, parts: tuple[str, ...] = ("mlp",)
                   ) -> Path:
    """A 'finetune' of `src`: the same checkpoint with small noise on the weights whose names contain one of
    `parts` (the MLPs by default)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(src)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if any(part in name for part in parts):
                p.add_(scale * torch.randn(p.shape, generator=g))
    model.save_pretrained(dst)
    tiny_tokenizer().save_pretrained(dst)
    return dst
