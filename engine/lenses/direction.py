"""The paper's causal-effect test: does the finetune's behaviour run through the mean-diff direction?

At one layer, at every token, one model's component along the unit mean-diff direction v̂ is set to the other
model's there (`ablation="base"`: x + ((x_source − x)·v̂) v̂) or removed (`"zero"`: x − (x·v̂) v̂), and its loss on
a text set is compared with the plain model's. `base_to_ft` intervenes on the finetune with the base's activations
(the reference's default), `ft_to_base` on the base with the finetune's. The same intervention along random unit
vectors and along differences of two random base activations (the reference's two controls) says how much any one
direction moves the loss: each kind of control is a sample of the null, and the effect gets a z-score and an
empirical p against each. Texts and controls are resampled (bootstrap) to say whether the verdict would hold on
other texts and controls: `decided` only when it does.

Per batch of texts, every direction rides in the same forwards, as many (text, direction) rows per forward as
`LOGITS_BUDGET` allows; only per-text loss sums per scope are kept (reference: diffing-toolkit
`src/diffing/methods/activation_difference_lens/causal_effect.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from jaxtyping import Bool, Float
from torch import Tensor

from engine.errors import UserError
from engine.jobs import JobContext
from engine.lenses.batching import encode_texts, text_batches
from engine.lenses.causal import next_token_nll
from engine.lenses.scored_texts import Example, ScoredBatch, ScoredText, encode_examples, scored_batches
from engine.models.loading import LoadedModel
from engine.models.pair import ModelPair

Ablation = Literal["base", "zero"]
ABLATIONS: tuple[str, ...] = ("base", "zero")
PatchDirection = Literal["base_to_ft", "ft_to_base"]
PATCH_DIRECTIONS: tuple[str, ...] = ("base_to_ft", "ft_to_base")
CONTROL_KINDS = ("random_vector", "random_diff")
DECIDED_P = 0.05
STABLE_SHARE = 0.95  # a verdict is decided when this share of text-and-control resamples agrees with it
RESAMPLES = 1000
MIN_CONTROLS = round(1 / DECIDED_P) - 1  # of each kind: fewer can never give p ≤ DECIDED_P, so never decide
LOGITS_BUDGET = 2**28  # logit floats per forward (1 GiB in float32): how many (text, direction) rows ride together


@dataclass(frozen=True)
class CausalProtocol:
    """What one protocol's direction test measures (`n` texts per set, `n_controls` of each kind, `after_k` the
    first scored target of the after-k scope, `all_positions` every position of the run instead of the strongest)."""

    name: str
    n: int
    n_controls: int
    max_tokens: int
    after_k: int
    all_positions: bool
    patch_directions: tuple[str, ...]


CAUSAL_PROTOCOLS = {
    # 32 + 32 controls: the smallest p is 1/33, room to decide under resampling (16 gave 1/17, never decided);
    # 32 texts of 32 tokens: z's spread over texts shrinks as 1/√n (docs/significance.md).
    "default": CausalProtocol("default", n=32, n_controls=32, max_tokens=32, after_k=20, all_positions=False,
                              patch_directions=("base_to_ft",)),
    # The reference's `causal_effect` config (configs/diffing/method/activation_difference_lens.yaml): 1000 samples
    # of up to 1024 tokens, 64 random vectors + 64 random diffs, after_k 20, every position, both patch directions.
    "paper": CausalProtocol("paper", n=1000, n_controls=64, max_tokens=1024, after_k=20, all_positions=True,
                            patch_directions=PATCH_DIRECTIONS),
}


def causal_protocol(name: str | None) -> CausalProtocol:
    """`default` (also for None) or `paper`; anything else is a `UserError` naming both."""
    found = CAUSAL_PROTOCOLS.get(name or "default")
    if found is None:
        raise UserError(f"unknown protocol {name!r}", f"pass --protocol {' or '.join(CAUSAL_PROTOCOLS)}")
    return found


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


@dataclass(frozen=True)
class Scopes:
    """Which targets each scope's loss covers: `all` scored targets, `after_k` those after target column `after_k`,
    and per position p `exclude_<p>` all but column p + start + 1 (the reference's `exclude_pos`, which with BOS
    as its position 0 drops target index p_ref + 1)."""

    after_k: int | None
    excluded: tuple[int, ...]  # run positions (after BOS) whose exclude scope is kept
    start: int  # token index of position 0 (1 after a BOS)

    @property
    def names(self) -> list[str]:
        return (["all"] + (["after_k"] if self.after_k is not None else [])
                + [f"exclude_{p}" for p in self.excluded])

    def masks(self, targets: Bool[Tensor, "batch seq"]) -> Float[Tensor, "batch seq scope"]:
        columns = torch.arange(targets.shape[1])
        out = [targets]
        if self.after_k is not None:
            out.append(targets & (columns > self.after_k))
        out += [targets & (columns != p + self.start + 1) for p in self.excluded]
        return torch.stack(out, dim=-1).double()


@dataclass
class SetSums:
    """Per text and scope: summed target loss of the intervened model clean (row 0), of the source model (row 1)
    and of the intervened model along each direction (rows 2…), and the scored-target count."""

    sums: Float[Tensor, "row text scope"]
    counts: Float[Tensor, "text scope"]


def _pass(model: LoadedModel, batch: ScoredBatch, layer: int, units: Float[Tensor, "c d_model"] | None,
          source: Float[Tensor, "batch seq d_model"] | None, keep_acts: bool
          ) -> tuple[Float[Tensor, "c batch seq"], Float[Tensor, "batch seq d_model"] | None]:
    """Next-token NLL of the batch, once per unit direction stacked into one forward (None: the clean model, and
    its activations at `layer` when `keep_acts`): the component along each direction set to `source`'s (or
    removed when `source` is None)."""
    rows = batch.ids.shape[0]
    copies = 1 if units is None else units.shape[0]
    ids, mask = batch.ids.repeat(copies, 1), batch.attention_mask.repeat(copies, 1)
    device = model.input_device
    acts = None
    with torch.inference_mode(), model.nn.trace(ids.to(device), attention_mask=mask.to(device)):
        out = model.nn_layer(layer).output
        if units is None:
            if keep_acts:
                acts = out.save()
        else:
            x = out.float()
            v = units.repeat_interleave(rows, dim=0).unsqueeze(1).to(x.device)
            target = 0.0 if source is None else (source.repeat(copies, 1, 1).to(x.device) * v).sum(-1, keepdim=True)
            out[:] = (x + (target - (x * v).sum(-1, keepdim=True)) * v).to(out.dtype)
        logits = model.nn.output.logits.save()
    nll = next_token_nll(logits.cpu(), ids).view(copies, rows, -1)
    return nll, None if acts is None else acts.float()


def rows_per_pass(n_texts: int, seq: int, vocab: int) -> int:
    """How many directions ride in one forward with a batch of `n_texts` texts of `seq` tokens."""
    return max(1, LOGITS_BUDGET // max(1, n_texts * seq * vocab))


def set_sums(pair: ModelPair, texts: list[ScoredText], layer: int, directions: Float[Tensor, "n d_model"],
             ablation: Ablation, patch: PatchDirection, scopes: Scopes, batch_size: int, ctx: JobContext,
             label: str) -> SetSums:
    """Per-text loss sums of the clean models and the intervened one along each direction, over one text set."""
    if ablation not in ABLATIONS:
        raise UserError(f"unknown ablation {ablation!r}", "pass --ablate base or --ablate zero")
    if patch not in PATCH_DIRECTIONS:
        raise UserError(f"unknown patch direction {patch!r}", f"pass --patch-direction {' or '.join(PATCH_DIRECTIONS)}")
    target_side, source_side = ("ft", "base") if patch == "base_to_ft" else ("base", "ft")
    units = unit_rows(directions.float())
    n_scopes = len(scopes.names)
    sums = torch.zeros(units.shape[0] + 2, len(texts), n_scopes, dtype=torch.float64)
    counts = torch.zeros(len(texts), n_scopes, dtype=torch.float64)
    for batch in scored_batches(texts, batch_size, pair.tokenizer.pad_token_id):
        rows = slice(batch.lo, batch.lo + batch.ids.shape[0])
        masks = scopes.masks(batch.targets)
        with pair.use(source_side) as model:  # type: ignore[arg-type]
            nll_source, source = _pass(model, batch, layer, None, None, ablation == "base")
        with pair.use(target_side) as model:  # type: ignore[arg-type]
            nll_target, _ = _pass(model, batch, layer, None, None, False)
            chunk = rows_per_pass(batch.ids.shape[0], batch.ids.shape[1], model.hf.config.get_text_config().vocab_size)
            for lo in range(0, units.shape[0], chunk):
                nll, _ = _pass(model, batch, layer, units[lo: lo + chunk], source, False)
                sums[2 + lo: 2 + lo + nll.shape[0], rows] = torch.einsum("cbt,bts->cbs", nll.double(), masks)
        sums[0, rows] = torch.einsum("bt,bts->bs", nll_target[0].double(), masks)
        sums[1, rows] = torch.einsum("bt,bts->bs", nll_source[0].double(), masks)
        counts[rows] = masks.sum(dim=1)
        ctx.progress(min(batch.lo + batch_size, len(texts)), len(texts), f"{label} texts")
    return SetSums(sums, counts)


def _spread(values: Tensor) -> dict[str, float]:
    return {"mean": round(float(values.mean()), 5),
            "std": round(float(values.std()) if values.numel() > 1 else 0.0, 5),
            "max_abs": round(float(values.abs().max()), 5)}


def empirical_p(effect: Tensor, controls: Tensor) -> Tensor:
    """Two-sided p of each effect against its row of controls: (1 + #{|c − mean| ≥ |effect − mean|}) / (N + 1)."""
    mean = controls.mean(dim=-1, keepdim=True)
    beyond = ((controls - mean).abs() >= (effect.unsqueeze(-1) - mean).abs() - 1e-12).sum(dim=-1)
    return (1 + beyond) / (controls.shape[-1] + 1)


def control_test(effect: float, controls: list[float]) -> dict[str, Any]:
    """The effect against one kind of controls: z = (effect − mean) / sd and the empirical two-sided p; `outside`
    when p ≤ `DECIDED_P` (with N controls the smallest p is 1/(N + 1), so N < 19 can never be outside)."""
    if len(controls) < 2:
        return {"z": None, "p": None, "n_controls": len(controls), "outside": None}
    t = torch.tensor(controls, dtype=torch.float64)
    sd = float(t.std())
    z = (effect - float(t.mean())) / sd if sd > 0 else None
    p = float(empirical_p(torch.tensor(effect, dtype=torch.float64), t))
    return {"z": None if z is None else round(z, 2), "p": round(p, 4), "n_controls": len(controls),
            "outside": p <= DECIDED_P}


def _resampled_p(sums: Tensor, counts: Tensor, row: int, kinds: dict[str, slice], seed: int
                 ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Per control kind, the p and z of the effect (direction `row`) on `RESAMPLES` bootstrap resamples of the
    texts (token-weighted, as the loss itself) and of that kind's controls."""
    generator = torch.Generator().manual_seed(seed)
    n_text = sums.shape[1]
    picks = torch.randint(n_text, (RESAMPLES, n_text), generator=generator)
    weights = torch.zeros(RESAMPLES, n_text, dtype=torch.float64).scatter_add_(
        1, picks, torch.ones(RESAMPLES, n_text, dtype=torch.float64))
    loss = (weights @ sums.T) / (weights @ counts).clamp_min(1.0).unsqueeze(1)  # [resample, row]
    change = loss - loss[:, :1]
    effect = change[:, row]
    ps, zs = {}, {}
    for kind, rows in kinds.items():
        controls = change[:, rows]
        drawn = torch.randint(controls.shape[1], controls.shape, generator=generator)
        controls = controls.gather(1, drawn)
        ps[kind] = empirical_p(effect, controls)
        sd = controls.std(dim=1)
        zs[kind] = torch.where(sd > 0, (effect - controls.mean(dim=1)) / sd.clamp_min(1e-30), torch.nan)
    return ps, zs


def verdict(tests: dict[str, dict[str, Any]], share: float | None, finetune_better: bool) -> dict[str, Any]:
    """`outside` (decided: the direction matters more than every kind of control, on ≥ `STABLE_SHARE` of the
    resamples), `inside` (decided: no more than some kind of control, as stably) or `undecided`, with its line."""
    outside = all(t["outside"] and t["stable"] >= STABLE_SHARE for t in tests.values())
    inside = sorted((kind for kind, t in tests.items() if t["outside"] is False and t["stable"] >= STABLE_SHARE),
                    key=lambda kind: -tests[kind]["p"])
    kind, test = max(tests.items(), key=lambda item: item[1]["p"])
    numbers = f"z = {_fmt(test['z'])} ± {_fmt(test['z_se'], sign=False)}, p = {test['p']} against the {_plural(kind)}"
    if outside:
        what = f"the finetune's {'gain' if finetune_better else 'damage'}"
        part = what if share is None else f"{abs(100 * share):.0f} % of {what}"
        moves = "carries" if share is None or share > 0 else "moves against"
        return {"decided": True, "outside": True, "line": f"decided: the direction {moves} {part} ({numbers})"}
    if inside:
        test = tests[inside[0]]
        return {"decided": True, "outside": False,
                "line": f"decided: the direction moves the loss no more than {_plural(inside[0])} do "
                        f"(z = {_fmt(test['z'])} ± {_fmt(test['z_se'], sign=False)}, p = {test['p']})"}
    return {"decided": False, "outside": None, "line": f"undecided at this power ({numbers})"}


def _plural(kind: str) -> str:
    return kind.replace("_", " ") + "s"


def _fmt(value: float | None, sign: bool = True) -> str:
    return "–" if value is None else f"{value:+.2f}" if sign else f"{value:.2f}"


def measure(sums: SetSums, scope: int, row: int, kinds: dict[str, slice], patch: str, seed: int
            ) -> dict[str, Any]:
    """One (direction, scope) of a text set: losses, the effect, each kind's controls and test, and the verdict."""
    s, c = sums.sums[:, :, scope], sums.counts[:, scope]
    if float(c.sum()) == 0:
        return {"n_tokens": 0, "effect": None, "verdict": {"decided": False, "outside": None,
                                                           "line": "no scored token in this scope"}}
    loss = s.sum(dim=1) / c.sum()
    target, source = float(loss[0]), float(loss[1])
    base, ft = (source, target) if patch == "base_to_ft" else (target, source)
    change = loss - loss[0]
    effect = float(change[row])
    share = effect / (source - target) if abs(source - target) > 1e-6 else None  # of the way to the source's loss
    ps, zs = _resampled_p(s, c, row, kinds, seed)
    tests = {}
    for kind, rows in kinds.items():
        test = control_test(effect, change[rows].tolist())
        if test["p"] is not None:
            stable = ps[kind] <= DECIDED_P if test["outside"] else ps[kind] > DECIDED_P
            finite = zs[kind][torch.isfinite(zs[kind])]
            test |= {"stable": round(float(stable.double().mean()), 3),
                     "z_se": round(float(finite.std()), 2) if finite.numel() > 1 else None}
        tests[kind] = test
    decided = (verdict(tests, share, ft < base) if all(t["n_controls"] >= MIN_CONTROLS for t in tests.values())
               else {"decided": False, "outside": None, "line": "undecided: too few controls"})
    return {"n_tokens": int(c.sum()), "intervened_model": "ft" if patch == "base_to_ft" else "base",
            "base": round(base, 5), "ft": round(ft, 5), "intervened": round(target + effect, 5),
            "effect": round(effect, 5), "share_of_gain_removed": None if share is None else round(share, 5),
            "controls": {kind: [round(v, 5) for v in change[rows].tolist()] for kind, rows in kinds.items()},
            "spread": {kind: _spread(change[rows]) for kind, rows in kinds.items() if rows.stop > rows.start},
            "tests": tests, "verdict": decided}


@dataclass(frozen=True)
class DirectionTest:
    """One direction test: the run's directions at `positions`, the controls of each kind, the scopes."""

    layer: int
    positions: dict[int, Float[Tensor, " d_model"]]
    controls: dict[str, Float[Tensor, "n d_model"]]
    ablation: Ablation = "base"
    patches: tuple[str, ...] = ("base_to_ft",)
    after_k: int | None = None
    exclude_positions: bool = False
    seed: int = 0


def direction_effect(pair: ModelPair, sets: dict[str, list[Example]], test: DirectionTest, max_tokens: int = 32,
                     batch_size: int = 4, ctx: JobContext | None = None
                     ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Per patch direction, position, text set and scope: the effect against each kind of control and its verdict;
    beside it the per-text loss sums and counts (`sums.PATCH.SET`, `counts.PATCH.SET`), for resampling later.

    `sets` is ordered, finetuning texts first. The top level (`effect`, `controls`, `sets` with scope `all`) is the
    first patch direction at the first position, the shape every reader of a one-position test reads."""
    ctx = ctx or JobContext()
    positions = list(test.positions)
    start = 1 if pair.tokenizer.bos_token_id is not None else 0
    scopes = Scopes(test.after_k, tuple(positions) if test.exclude_positions else (), start)
    counts = {kind: int(test.controls[kind].shape[0]) for kind in CONTROL_KINDS}
    directions = torch.cat([*[v.float().unsqueeze(0) for v in test.positions.values()],
                            *[test.controls[kind].float() for kind in CONTROL_KINDS]])
    kinds, lo = {}, 2 + len(positions)
    for kind in CONTROL_KINDS:
        kinds[kind], lo = slice(lo, lo + counts[kind]), lo + counts[kind]
    encoded = {name: encode_examples(pair.tokenizer, examples, max_tokens, name)
               for name, examples in sets.items() if examples}
    by_patch: dict[str, Any] = {}
    raw: dict[str, np.ndarray] = {}
    for patch in test.patches:
        by_position: dict[str, Any] = {str(p): {} for p in positions}
        for name, texts in encoded.items():
            sums = set_sums(pair, texts, test.layer, directions, test.ablation, patch, scopes,  # type: ignore[arg-type]
                            batch_size, ctx, name)
            raw |= {f"sums.{patch}.{name}": sums.sums.numpy(), f"counts.{patch}.{name}": sums.counts.numpy()}
            for i, p in enumerate(positions):
                measured = {scope: measure(sums, j, 2 + i, kinds, patch, test.seed)
                            for j, scope in enumerate(scopes.names)
                            if not scope.startswith("exclude_") or scope == f"exclude_{p}"}
                by_position[str(p)][name] = {"n_texts": len(texts), **measured["all"],
                                             "scopes": {k.removesuffix(f"_{p}"): v for k, v in measured.items()}}
        by_patch[patch] = by_position
    first = by_patch[test.patches[0]][str(positions[0])]
    head = next(iter(first.values()))
    return {"mode": "direction", "layer": test.layer, "ablation": test.ablation, "pos": positions[0],
            "positions": positions, "patch_direction": test.patches[0], "n_controls": counts[CONTROL_KINDS[0]],
            "direction_norm": round(float(test.positions[positions[0]].norm()), 4), "effect": head["effect"],
            "controls": head["controls"], "sets": first, "scopes": scopes.names, "by_patch_direction": by_patch}, raw
