"""Amplification: the finetune's change scaled by a factor, in all of the model or only part of it, and generate.

Factor 0 is the base model, 1 the finetune, 2 the finetune's change doubled, −1 its change reversed. Small
finetunes often show their behaviour only faintly; amplified, it reads plainly. A `Scope` limits the scaling to
one module kind (attention, MLP) and/or a range of decoder layers; the rest stays the finetune.

- LoRA: peft keeps one `scaling` per adapter per LoRA layer, so the factor is set there on the layers in scope
  (all rows of a batch share it) and restored after.
- Full finetunes: base + f·(ft − base), without a third copy of the weights. Every module in scope whose output
  is affine in its own parameters (linear layers, embeddings, norms: all the parametrised leaves of a decoder)
  gives (1 − f)·base_module(x) + f·ft_module(x) on its input x, which is exactly the output of the interpolated
  weights; a forward hook on the finetuned module runs its base twin, one module at a time.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from engine import jobs
from engine.errors import UserError
from engine.models.loading import LoadedModel
from engine.models.pair import ModelPair
from engine.steering.generate import format_prompt, local_sampling_kwargs

MODULE_KINDS = ("all", "attention", "mlp")
_KIND_PATTERNS = {"attention": re.compile(r"(self_attn|attention|attn)\."), "mlp": re.compile(r"(mlp|feed_forward)\.")}
_LAYER = re.compile(r"\.layers\.(\d+)\.")


@dataclass(frozen=True)
class Scope:
    """The part of the finetune a factor scales: a module kind and an inclusive decoder-layer range (None: all).

    A range leaves out what sits outside the decoder layers (embeddings, final norm, unembedding)."""

    modules: str = "all"
    layers: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.modules not in MODULE_KINDS:
            raise UserError(f"unknown module kind {self.modules!r}", f"pass --modules {' | '.join(MODULE_KINDS)}")
        if self.layers is not None and not 0 <= self.layers[0] <= self.layers[1]:
            raise UserError(f"bad layer range {self.layers[0]}-{self.layers[1]}", "pass --layers FIRST-LAST, e.g. 0-8")

    def covers(self, name: str) -> bool:
        """Whether the module called `name` (a dotted path) is in scope."""
        if self.modules != "all" and not _KIND_PATTERNS[self.modules].search(name):
            return False
        if self.layers is None:
            return True
        found = _LAYER.search(name)
        return found is not None and self.layers[0] <= int(found.group(1)) <= self.layers[1]

    def label(self) -> str:
        where = "" if self.layers is None else f" layers {self.layers[0]}–{self.layers[1]}"
        return f"{self.modules}{where}"


EVERYTHING = Scope()


def lora_layers(model: LoadedModel, scope: Scope = EVERYTHING) -> list[Any]:
    """The peft LoRA layers in `scope` that carry this view's adapter (one loaded base may carry several
    adapters; the base's own view carries none)."""
    from peft.tuners.lora import LoraLayer

    adapter = model.adapter_name
    return [m for name, m in model.hf.named_modules()
            if isinstance(m, LoraLayer) and adapter is not None and adapter in m.scaling and scope.covers(name)]


@contextlib.contextmanager
def scaled_adapter(model: LoadedModel, factor: float, scope: Scope = EVERYTHING) -> Iterator[None]:
    """This view's adapter scaled by `factor` on every LoRA layer in `scope` for the block (other adapters on the
    same loaded base untouched); the originals come back after."""
    layers = lora_layers(model, scope)
    if not layers:
        raise UserError(f"the adapter has no LoRA layer in {scope.label()}", "widen --modules or --layers")
    name = model.adapter_name
    saved = [layer.scaling[name] for layer in layers]
    for layer, original in zip(layers, saved, strict=True):
        layer.scaling[name] = original * factor
    try:
        yield
    finally:
        for layer, original in zip(layers, saved, strict=True):
            layer.scaling[name] = original


def _mixed(base_module: Any, factor: float) -> Any:
    """A forward hook giving (1 − f)·base_module(x) + f·(the finetuned module's output) on the same input."""
    def hook(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> Any:
        device = next(base_module.parameters()).device
        moved = [a.to(device) if isinstance(a, torch.Tensor) else a for a in args]
        base_out = base_module(*moved, **kwargs).to(output.device, output.dtype)
        return torch.lerp(base_out, output, factor)
    return hook


@contextlib.contextmanager
def mixed_weights(pair: ModelPair, factor: float, scope: Scope = EVERYTHING) -> Iterator[None]:
    """The finetuned model behaves as base + f·(ft − base) in `scope` for the block (hooks, removed after)."""
    pair.check_diffable()
    base_modules = dict(pair.base.hf.named_modules())
    handles = []
    try:
        for name, module in pair.ft.hf.named_modules():
            if not scope.covers(name) or next(module.parameters(recurse=False), None) is None:
                continue
            twin = base_modules.get(name)
            if twin is None:
                raise UserError(f"the base model has no module {name!r} to mix with", "amplify a pair of one "
                                "architecture (a full finetune of the base)")
            handles.append(module.register_forward_hook(_mixed(twin, factor), with_kwargs=True))
        if not handles:
            raise UserError(f"the model has no weights in {scope.label()}", "widen --modules or --layers")
        yield
    finally:
        for handle in handles:
            handle.remove()


def generate(model: LoadedModel, prompts: Sequence[str], max_new_tokens: int, temperature: float, seed: int,
             chat: bool) -> list[str]:
    """One batched `generate` over `prompts` (left-padded); greedy at temperature 0, else seeded sampling."""
    tok = model.tokenizer
    batch = tok.pad({"input_ids": [format_prompt(model, p, chat) for p in prompts]}, padding=True,
                    padding_side="left", return_tensors="pt")
    kwargs: dict[str, Any] = dict(max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id)
    kwargs |= local_sampling_kwargs(model, temperature)
    device = model.input_device
    with (torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.inference_mode(),
          warnings.catch_warnings()):
        warnings.filterwarnings("ignore", message=".*generation flags.*")
        torch.manual_seed(seed)
        out = model.hf.generate(  # type: ignore[operator]  # GenerationMixin, not on PreTrainedModel
            batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device), **kwargs)
    return tok.batch_decode(_until_eos(model, out[:, batch["input_ids"].shape[1]:].cpu()), skip_special_tokens=True)


def _until_eos(model: LoadedModel, completion: Int[Tensor, "batch new"]) -> list[list[int]]:
    eos = model.hf.generation_config.eos_token_id
    eos_ids = torch.tensor(eos if isinstance(eos, list) else [eos if eos is not None else -1])
    is_end = torch.isin(completion, eos_ids)
    lengths = torch.where(is_end.any(dim=1), is_end.int().argmax(dim=1), completion.shape[1])
    return [row[:n].tolist() for row, n in zip(completion, lengths.tolist(), strict=True)]


def amplify(pair: ModelPair, prompts: Sequence[str], factors: Sequence[float], max_new_tokens: int = 48,
            temperature: float = 0.0, seed: int = 0, chat: bool = True, scope: Scope = EVERYTHING) -> dict[str, Any]:
    """Per prompt: the base and plain finetuned completions beside one completion per factor (scaled in `scope`).

    One batched generation per column (base, finetuned, each factor). Greedy (temperature 0) makes factor 0 in
    the whole model equal the base column and factor 1 the finetuned column token for token.
    """
    lora = pair.shared and bool(lora_layers(pair.ft))
    if pair.shared and not lora:
        raise UserError("amplification scales a LoRA adapter or a full finetune's weights, and this pair is neither",
                        "pass --ft BASE --adapter DIR, or --ft a full finetune")
    if not prompts or not factors:
        raise UserError("amplification needs prompts and factors", "pass --prompt P and --factor F")
    columns: dict[str, list[str]] = {}
    ctx, total = jobs.current(), 2 + len(factors)
    ctx.progress(0, total, "columns (base)")
    with pair.use("base") as model:
        columns["base"] = generate(model, prompts, max_new_tokens, temperature, seed, chat)
    ctx.progress(1, total, "columns (finetuned)")
    with pair.use("ft") as model:
        columns["ft"] = generate(model, prompts, max_new_tokens, temperature, seed, chat)
        for index, factor in enumerate(factors):
            ctx.progress(2 + index, total, f"columns (×{float(factor):g})")
            scaled = scaled_adapter(model, factor, scope) if lora else mixed_weights(pair, factor, scope)
            with scaled:
                columns[f"{float(factor):g}"] = generate(model, prompts, max_new_tokens, temperature, seed, chat)
    ctx.progress(total, total, "columns")
    return {"factors": [float(f) for f in factors], "temperature": temperature, "max_new_tokens": max_new_tokens,
            "method": "lora" if lora else "weights", "scope": scope.label(),
            "rows": [{"prompt": p, "base": columns["base"][i], "ft": columns["ft"][i],
                      "amplified": {f"{float(f):g}": columns[f"{float(f):g}"][i] for f in factors}}
                     for i, p in enumerate(prompts)]}
