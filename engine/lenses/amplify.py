"""LoRA amplification: scale an adapter's weight delta (B·A·scaling) by a factor and generate.

Factor 0 is the base model, 1 the finetune, 2 the finetune's change doubled, −1 its change reversed. Small
finetunes often show their behaviour only faintly; amplified, it reads plainly. peft keeps one `scaling`
per adapter per LoRA layer, so the factor is set there (all rows of a batch share it) and restored after.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from engine.errors import UserError
from engine.models.loading import LoadedModel
from engine.models.pair import ModelPair
from engine.steering.generate import format_prompt


def lora_layers(model: LoadedModel) -> list[Any]:
    """The model's peft LoRA layers (those that carry a per-adapter `scaling`)."""
    from peft.tuners.lora import LoraLayer

    return [m for m in model.hf.modules() if isinstance(m, LoraLayer)]


@contextlib.contextmanager
def scaled_adapter(model: LoadedModel, factor: float) -> Iterator[None]:
    """Every LoRA layer's scaling multiplied by `factor` for the block; the originals come back after."""
    layers = lora_layers(model)
    saved = [dict(layer.scaling) for layer in layers]
    for layer, original in zip(layers, saved, strict=True):
        for name, value in original.items():
            layer.scaling[name] = value * factor
    try:
        yield
    finally:
        for layer, original in zip(layers, saved, strict=True):
            layer.scaling.update(original)


def generate(model: LoadedModel, prompts: Sequence[str], max_new_tokens: int, temperature: float, seed: int,
             chat: bool) -> list[str]:
    """One batched `generate` over `prompts` (left-padded); greedy at temperature 0, else seeded sampling."""
    tok = model.tokenizer
    batch = tok.pad({"input_ids": [format_prompt(model, p, chat) for p in prompts]}, padding=True,
                    padding_side="left", return_tensors="pt")
    kwargs: dict[str, Any] = dict(max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id)
    kwargs |= (dict(do_sample=True, temperature=temperature, top_k=0, top_p=1.0) if temperature > 0
               else dict(do_sample=False, temperature=None, top_k=None, top_p=None))
    device = model.input_device
    with (torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.inference_mode(),
          warnings.catch_warnings()):
        warnings.filterwarnings("ignore", message=".*generation flags.*")
        torch.manual_seed(seed)
        out = model.hf.generate(batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
                                **kwargs)
    return tok.batch_decode(_until_eos(model, out[:, batch["input_ids"].shape[1]:].cpu()), skip_special_tokens=True)


def _until_eos(model: LoadedModel, completion: Int[Tensor, "batch new"]) -> list[list[int]]:
    eos = model.hf.generation_config.eos_token_id
    eos_ids = torch.tensor(eos if isinstance(eos, list) else [eos if eos is not None else -1])
    is_end = torch.isin(completion, eos_ids)
    lengths = torch.where(is_end.any(dim=1), is_end.int().argmax(dim=1), completion.shape[1])
    return [row[:n].tolist() for row, n in zip(completion, lengths.tolist(), strict=True)]


def amplify(pair: ModelPair, prompts: Sequence[str], factors: Sequence[float], max_new_tokens: int = 48,
            temperature: float = 0.0, seed: int = 0, chat: bool = True) -> dict[str, Any]:
    """Per prompt: the base and plain finetuned completions beside one completion per factor.

    One batched generation per column (base, finetuned, each factor). Greedy (temperature 0) makes factor 0
    equal the base column and factor 1 the finetuned column token for token.
    """
    if not pair.shared or not lora_layers(pair.ft):
        raise UserError("amplification scales a LoRA adapter, and this finetune has none",
                        "pass --ft BASE --adapter DIR (or --ft demo)")
    if not prompts or not factors:
        raise UserError("amplification needs prompts and factors", "pass --prompt P and --factor F")
    columns: dict[str, list[str]] = {}
    with pair.use("base") as model:
        columns["base"] = generate(model, prompts, max_new_tokens, temperature, seed, chat)
    with pair.use("ft") as model:
        columns["ft"] = generate(model, prompts, max_new_tokens, temperature, seed, chat)
        for factor in factors:
            with scaled_adapter(model, factor):
                columns[f"{float(factor):g}"] = generate(model, prompts, max_new_tokens, temperature, seed, chat)
    return {"factors": [float(f) for f in factors], "temperature": temperature, "max_new_tokens": max_new_tokens,
            "rows": [{"prompt": p, "base": columns["base"][i], "ft": columns["ft"][i],
                      "amplified": {f"{float(f):g}": columns[f"{float(f):g}"][i] for f in factors}}
                     for i, p in enumerate(prompts)]}
