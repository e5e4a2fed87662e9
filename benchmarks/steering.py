"""Steering: generated tokens/s of the batched α × prompt grid (one `generate_steered` call) vs one call
per (α, prompt), and vs a bare unsteered `generate` of the same padded batch (the floor: no nnsight). Then
sampled generation (calibration and reports sample at T = 0.7): the same bare batch drawn by `TruncatedSampler`
(top-k first) vs by transformers' own warpers and whole-vocabulary draw, which sample the same distribution.

Tokens counted are those actually generated (up to each row's end-of-sequence), the same for every method.
"""

from __future__ import annotations

from typing import Any

import torch

from benchmarks.config import Settings
from benchmarks.timing import Gauge, clock
from engine.adl.depth import middle_layer
from engine.models.loading import LoadedModel
from engine.models.pair import ModelPair
from engine.protocol.methods import DEFAULT_TEMPERATURE
from engine.steering.generate import format_prompt, generate_steered, local_sampling_kwargs, sampling_kwargs

PROMPTS = ("Tell me about your favourite food.", "What should I do this weekend?",
           "Write one sentence about the sea.", "Give me advice for a job interview.",
           "Describe a city you like.", "What is a good hobby?", "Explain how rain forms.",
           "Suggest a name for a cat.")


def _bare(model: LoadedModel, prompts: list[str], rows: int, max_new_tokens: int,
          sampling: dict[str, object] | None = None) -> int:
    ids = [format_prompt(model, p) for p in prompts for _ in range(rows // len(prompts))]
    batch = model.tokenizer.pad({"input_ids": ids}, padding=True, padding_side="left", return_tensors="pt")
    with torch.inference_mode():
        out = model.hf.generate(  # type: ignore[operator]  # GenerationMixin, not on PreTrainedModel
            batch["input_ids"].to(model.input_device),
                                attention_mask=batch["attention_mask"].to(model.input_device),
                                max_new_tokens=max_new_tokens, pad_token_id=model.tokenizer.pad_token_id,
                                **(sampling or sampling_kwargs(0.0)))
    new = out[:, batch["input_ids"].shape[1]:].cpu()
    eos = model.hf.generation_config.eos_token_id
    ended = torch.isin(new, torch.tensor(eos if isinstance(eos, list) else [eos if eos is not None else -1]))
    return int(torch.where(ended.any(1), ended.int().argmax(1), new.shape[1]).sum())


def steering(pair: ModelPair, vector: torch.Tensor, s: Settings, gauge: Gauge) -> dict[str, Any]:
    """The three ways over the same prompts × strengths (steered at the middle layer of the finetuned model)."""
    prompts = list(PROMPTS[: s.steer_prompts])
    strengths = list(s.steer_strengths)
    layer = middle_layer(pair.n_layers)
    with pair.use("ft") as model:
        def batched() -> int:
            rows = generate_steered(model, vector, layer, prompts, strengths, max_new_tokens=s.steer_tokens)
            return sum(len(r.completion_ids) for r in rows)

        def one_by_one() -> int:
            return sum(len(r.completion_ids) for p in prompts for a in strengths
                       for r in generate_steered(model, vector, layer, [p], [a], max_new_tokens=s.steer_tokens))

        rows = len(prompts) * len(strengths)
        draws = {"sampled_top_k_draw": local_sampling_kwargs(model, DEFAULT_TEMPERATURE),
                 "sampled_transformers_draw": sampling_kwargs(DEFAULT_TEMPERATURE)}
        out: dict[str, dict[str, float]] = {}
        for name, fn in (("batched", batched), ("one_by_one", one_by_one),
                         ("bare_generate", lambda: _bare(model, prompts, rows, s.steer_tokens)),
                         *((name, lambda kw=kw: _bare(model, prompts, rows, s.steer_tokens, kw))
                           for name, kw in draws.items())):
            with gauge.measure(f"steer_{name}"):
                seconds, tokens = clock(fn)
            out[name] = {"seconds": round(seconds, 2), "tokens": tokens, "tokens_per_s": round(tokens / seconds, 1)}
    rate = {name: v["tokens_per_s"] for name, v in out.items()}
    return {"rows": len(prompts) * len(strengths), "prompts": len(prompts), "strengths": strengths,
            "max_new_tokens": s.steer_tokens, "layer": layer, "temperature": DEFAULT_TEMPERATURE, **out,
            "batched_ratio": round(rate["batched"] / rate["one_by_one"], 2),
            "floor_ratio": round(rate["batched"] / rate["bare_generate"], 3),
            "sampler_ratio": round(rate["sampled_top_k_draw"] / rate["sampled_transformers_draw"], 2)}
