"""The paper's causal-effect test: does the finetune's behaviour run through the mean-diff direction?

At one layer, at every token, the finetuned model's component along the unit mean-diff direction v̂ is set to
the base model's component there (`ablation="base"`: x + ((x_base − x)·v̂) v̂) or removed (`"zero"`:
x − (x·v̂) v̂), and the loss on a text set is compared with the plain finetune's. The same intervention along
random unit vectors and along differences of two random base activations at that layer (the authors'
toolkit's two controls) says how much any one direction would move the loss. A direction that carries the
finetune moves it far more than the controls; for an identical pair nothing moves.

Each forward carries one batch of texts once per direction of a chunk (`DIRECTIONS_PER_PASS`), so memory is
bounded by the batch, and only per-direction loss sums are kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from jaxtyping import Float
from torch import Tensor

from engine.errors import UserError
from engine.jobs import JobContext
from engine.lenses.batching import TextBatch, encode_texts, text_batches
from engine.lenses.causal import next_token_nll, nll_and_acts, scored_tokens
from engine.models.loading import LoadedModel
from engine.models.pair import ModelPair

Ablation = Literal["base", "zero"]
ABLATIONS: tuple[str, ...] = ("base", "zero")
DIRECTIONS_PER_PASS = 4
CONTROL_KINDS = ("random_vector", "random_diff")
DECIDED_P = 0.05


def unit_rows(vectors: Float[Tensor, "n d_model"]) -> Float[Tensor, "n d_model"]:
    """Each row scaled to length 1; a zero row stays zero (no direction: its intervention changes nothing)."""
    norms = vectors.norm(dim=-1, keepdim=True)
    return torch.where(norms > 0, vectors / norms.clamp_min(1e-30), torch.zeros_like(vectors))


def strongest_position(diff: Float[Tensor, "pos d_model"]) -> int:
    """The position whose mean diff is longest, after the first when there are more (the first is often odd)."""
    skip = 1 if diff.shape[0] > 1 else 0
    return skip + int(diff[skip:].norm(dim=-1).argmax())


def random_vectors(n: int, d_model: int, seed: int) -> Float[Tensor, "n d_model"]:
    """`n` seeded random unit directions."""
    return unit_rows(torch.randn(n, d_model, generator=torch.Generator().manual_seed(seed)))


def random_diffs(model: LoadedModel, texts: list[str], layer: int, n: int, seed: int, max_tokens: int,
                 batch_size: int) -> Float[Tensor, "n d_model"]:
    """Differences of `n` seeded random pairs of the model's activations at `layer` over the texts' tokens."""
    encoded, start = encode_texts(model.tokenizer, texts, max_tokens)
    pool: list[Tensor] = []
    for batch in text_batches(encoded, start, batch_size, model.tokenizer.pad_token_id):
        device = model.input_device
        with torch.inference_mode(), model.nn.trace(batch.ids.to(device),
                                                    attention_mask=batch.attention_mask.to(device)):
            acts = model.nn_layer(layer).output.save()
        pool.append(acts.float().cpu()[batch.valid])
    tokens = torch.cat(pool)
    if tokens.shape[0] < 2:
        raise UserError("the random-diff control needs at least two tokens of text", "pass longer texts")
    generator = torch.Generator().manual_seed(seed)
    picks = torch.randint(tokens.shape[0], (n, 2), generator=generator)
    return tokens[picks[:, 0]] - tokens[picks[:, 1]]


@dataclass
class LossSums:
    """Summed next-token loss per model and per intervened direction, and the token count, over a text set."""

    n_directions: int
    base: float = 0.0
    ft: float = 0.0
    count: int = 0
    intervened: Tensor = field(init=False)

    def __post_init__(self) -> None:
        self.intervened = torch.zeros(self.n_directions, dtype=torch.float64)


def _intervened_pass(model: LoadedModel, batch: TextBatch, layer: int, units: Float[Tensor, "c d_model"],
                     base_acts: Float[Tensor, "batch seq d_model"] | None) -> Float[Tensor, "c batch seq"]:
    """NLL with the component along each unit direction set to the base's (or removed), one copy per direction."""
    rows, copies = batch.ids.shape[0], units.shape[0]
    device = model.input_device
    ids, mask = batch.ids.repeat(copies, 1), batch.attention_mask.repeat(copies, 1)
    with torch.inference_mode(), model.nn.trace(ids.to(device), attention_mask=mask.to(device)):
        out = model.nn_layer(layer).output
        x = out.float()
        v = units.repeat_interleave(rows, dim=0).unsqueeze(1).to(x.device)
        target = 0.0 if base_acts is None else (base_acts.repeat(copies, 1, 1).to(x.device) * v).sum(-1, keepdim=True)
        out[:] = (x + (target - (x * v).sum(-1, keepdim=True)) * v).to(out.dtype)
        logits = model.nn.output.logits.save()
    return next_token_nll(logits.cpu(), ids).view(copies, rows, -1)


def set_sums(pair: ModelPair, texts: list[str], layer: int, directions: Float[Tensor, "n d_model"],
             ablation: Ablation, max_tokens: int, batch_size: int, ctx: JobContext, label: str) -> LossSums:
    """Loss sums of base, finetune and the finetune intervened along each direction, over one text set."""
    encoded, start = encode_texts(pair.tokenizer, texts, max_tokens)
    units = unit_rows(directions.float())
    sums = LossSums(units.shape[0])
    for batch in text_batches(encoded, start, batch_size, pair.tokenizer.pad_token_id):
        scored = scored_tokens(batch)
        with pair.use("base") as model:
            nll_base, base_acts = nll_and_acts(model, batch, layer, 0, batch.ids.shape[1])
        with pair.use("ft") as model:
            nll_ft, _ = nll_and_acts(model, batch, layer, 0, 0)
            for lo in range(0, units.shape[0], DIRECTIONS_PER_PASS):
                nll = _intervened_pass(model, batch, layer, units[lo: lo + DIRECTIONS_PER_PASS],
                                       base_acts if ablation == "base" else None)
                sums.intervened[lo: lo + nll.shape[0]] += torch.where(scored, nll, 0.0).sum(dim=(1, 2)).double()
        sums.base += float(nll_base[scored].sum())
        sums.ft += float(nll_ft[scored].sum())
        sums.count += int(scored.sum())
        ctx.progress(min(batch.lo + batch_size, len(encoded)), len(encoded), f"{label} texts")
    if sums.count == 0:
        raise UserError(f"no {label} text has two tokens to score", "pass longer texts")
    return sums


def _spread(values: list[float]) -> dict[str, float]:
    t = torch.tensor(values, dtype=torch.float64)
    return {"mean": round(float(t.mean()), 5), "std": round(float(t.std()) if len(values) > 1 else 0.0, 5),
            "max_abs": round(float(t.abs().max()), 5)}


def control_test(effect: float, controls: list[float]) -> dict[str, Any]:
    """The effect against every control pooled: z = (effect − mean) / sd and the empirical two-sided
    p = (1 + #{|c − mean| ≥ |effect − mean|}) / (N + 1); `outside` when p ≤ `DECIDED_P` (with N controls the
    smallest p is 1/(N + 1), so N < 19 can never decide)."""
    if len(controls) < 2:
        return {"z": None, "p": None, "n_controls": len(controls), "outside": None}
    t = torch.tensor(controls, dtype=torch.float64)
    mean, sd = float(t.mean()), float(t.std())
    distance = abs(effect - mean)
    p = (1 + int(((t - mean).abs() >= distance).sum())) / (len(controls) + 1)
    z = (effect - mean) / sd if sd > 0 else None
    return {"z": None if z is None else round(z, 2), "p": round(p, 4), "n_controls": len(controls),
            "outside": p <= DECIDED_P}


def set_result(sums: LossSums, n_text: int, n_controls: dict[str, int]) -> dict[str, Any]:
    """Mean losses and the effect (intervened − finetuned loss) beside the same change under each control."""
    base, ft = sums.base / sums.count, sums.ft / sums.count
    changes = (sums.intervened / sums.count - ft).tolist()
    controls, lo = {}, 1
    for kind in CONTROL_KINDS:
        controls[kind] = [round(c, 5) for c in changes[lo: lo + n_controls[kind]]]
        lo += n_controls[kind]
    gain = base - ft
    return {"n_texts": n_text, "n_tokens": sums.count, "base": round(base, 5), "ft": round(ft, 5),
            "intervened": round(ft + changes[0], 5), "effect": round(changes[0], 5),
            "share_of_gain_removed": round(changes[0] / gain, 5) if abs(gain) > 1e-6 else None,
            "controls": controls, "spread": {kind: _spread(v) for kind, v in controls.items() if v},
            "test": control_test(changes[0], [c for kind in CONTROL_KINDS for c in controls[kind]])}


def direction_effect(pair: ModelPair, sets: dict[str, list[str]], direction: Float[Tensor, " d_model"], layer: int,
                     controls: dict[str, Float[Tensor, "n d_model"]], ablation: Ablation = "base",
                     max_tokens: int = 64, batch_size: int = 4, ctx: JobContext | None = None) -> dict[str, Any]:
    """Per text set: base, finetuned and intervened loss, the effect and each control's loss changes.

    `sets` is ordered, finetuning texts first: the top-level `effect` and `controls` are theirs."""
    ctx = ctx or JobContext()
    if ablation not in ABLATIONS:
        raise UserError(f"unknown ablation {ablation!r}", "pass --ablate base or --ablate zero")
    counts = {kind: int(controls[kind].shape[0]) for kind in CONTROL_KINDS}
    directions = torch.cat([direction.float().unsqueeze(0), *[controls[kind].float() for kind in CONTROL_KINDS]])
    out = {name: set_result(set_sums(pair, texts, layer, directions, ablation, max_tokens, batch_size, ctx, name),
                            len(texts), counts)
           for name, texts in sets.items() if texts}
    first = next(iter(out.values()))
    return {"mode": "direction", "layer": layer, "ablation": ablation,
            "direction_norm": round(float(direction.norm()), 4), "effect": first["effect"],
            "controls": first["controls"], "sets": out}
