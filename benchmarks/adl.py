"""ADL compute: difflens vs the notebook baseline vs the floor (texts/s, both models together).

- difflens: `Sums.add_pair`, what `compute_adl` runs per batch (one nnsight trace per side, stopped after
  the last layer, only the k positions kept), plus `compute_adl` end to end for the scaling in n.
- baseline: what a notebook does: both models with `output_hidden_states=True` on the first
  `baseline_tokens` tokens of each text, then slice positions 1..k and average.
- floor: a bare forward of both decoders (no unembedding: difflens never needs it) over the same
  BOS + k-token batches, nothing recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch

from benchmarks.config import Settings
from benchmarks.corpus import bench_texts, write_corpus
from benchmarks.timing import Gauge, clock, interleaved
from engine.adl.accumulate import Sums
from engine.adl.compute import compute_adl
from engine.adl.request import AdlRequest
from engine.corpus.windows import Batch, batches, make_windows
from engine.models.pair import ModelPair


def floor_pass(pair: ModelPair, batch: Batch) -> None:
    """Both decoders over the batch; nothing kept."""
    for side in ("base", "ft"):
        with pair.use(side) as model, torch.inference_mode():
            device = model.input_device
            model.hf.get_decoder()(input_ids=batch.input_ids.to(device),
                                   attention_mask=batch.attention_mask.to(device), use_cache=False)


def baseline_pass(pair: ModelPair, encoded: dict[str, torch.Tensor], k: int, totals: dict[str, torch.Tensor]
                  ) -> None:
    """The notebook way: every hidden state of the full (truncated) sequences, then slice and sum."""
    for side in ("base", "ft"):
        with pair.use(side) as model, torch.inference_mode():
            device = model.input_device
            out = model.hf(input_ids=encoded["input_ids"].to(device),
                           attention_mask=encoded["attention_mask"].to(device), output_hidden_states=True)
            hidden = torch.stack(out.hidden_states[1:])[:, :, 1:k + 1]
            totals[side] = totals.get(side, 0) + hidden.double().sum(1).cpu()


def _rates(counts: dict[str, int], seconds: dict[str, float]) -> dict[str, float]:
    return {name: round(counts[name] / seconds[name], 2) for name in seconds}


def _split(pair: ModelPair, texts: list[str], k: int, batch_size: int) -> tuple[list[Batch], int]:
    windows, _ = make_windows(pair.tokenizer, texts, k)
    return [b for _, b in batches(windows, k, batch_size, pair.tokenizer.pad_token_id)], len(windows)


def ratio(pair: ModelPair, layers: list[int], s: Settings, gauge: Gauge) -> dict[str, Any]:
    """difflens / floor / baseline on the same texts and k, interleaved batch by batch."""
    texts = bench_texts(s.ratio_n)
    dl_batches, n_windows = _split(pair, texts, s.k, s.batch_size)
    tok = pair.tokenizer
    base_texts = texts[: s.baseline_n]
    encoded = [tok(base_texts[i:i + s.baseline_batch], padding=True, truncation=True, max_length=s.baseline_tokens,
                   return_tensors="pt") for i in range(0, len(base_texts), s.baseline_batch)]
    sums = Sums.zeros(len(layers), s.k, pair.d_model)
    totals: dict[str, torch.Tensor] = {}
    rounds: list[dict[str, Callable[[], Any]]] = []
    for i, batch in enumerate(dl_batches):
        methods: dict[str, Callable[[], Any]] = {
            "floor": partial(floor_pass, pair, batch),
            "difflens": partial(sums.add_pair, pair, batch, layers)}
        if i < len(encoded):
            methods["baseline"] = partial(baseline_pass, pair, encoded[i], s.k, totals)
        rounds.append(methods)
    floor_pass(pair, dl_batches[0])  # warm-up: first-call allocations and lazy inits of both paths
    Sums.zeros(len(layers), s.k, pair.d_model).add_pair(pair, dl_batches[0], layers)
    seconds = interleaved(rounds, gauge)
    rates = _rates({"floor": n_windows, "difflens": n_windows, "baseline": len(base_texts)}, seconds)
    return {"texts": n_windows, "baseline_texts": len(base_texts), "k": s.k, "batch_size": s.batch_size,
            "texts_per_s": rates, "seconds": {n: round(v, 3) for n, v in seconds.items()},
            "floor_ratio": round(rates["difflens"] / rates["floor"], 3),
            "baseline_ratio": round(rates["difflens"] / rates["baseline"], 2),
            "peak_memory_mb": {name: gauge.peaks[name] for name in seconds}}


def scale_k(pair: ModelPair, layers: list[int], s: Settings) -> list[dict[str, Any]]:
    """difflens vs floor (interleaved) for each k in `s.ks`, on `s.k_n` texts."""
    out = []
    texts = bench_texts(s.k_n)
    for k in s.ks:
        dl_batches, n_windows = _split(pair, texts, k, s.batch_size)
        sums = Sums.zeros(len(layers), k, pair.d_model)
        rounds: list[dict[str, Callable[[], Any]]] = [
            {"floor": partial(floor_pass, pair, b), "difflens": partial(sums.add_pair, pair, b, layers)}
            for b in dl_batches]
        seconds = interleaved(rounds)
        rates = _rates({"floor": n_windows, "difflens": n_windows}, seconds)
        out.append({"k": k, "texts": n_windows, "texts_per_s": rates,
                    "floor_ratio": round(rates["difflens"] / rates["floor"], 3)})
    return out


def scale_batch(pair: ModelPair, layers: list[int], s: Settings) -> list[dict[str, Any]]:
    """difflens vs floor at small batch sizes: the fixed cost per nnsight trace shows as the gap per batch."""
    out = []
    texts = bench_texts(s.batch_n)
    for size in s.batch_sizes:
        dl_batches, n_windows = _split(pair, texts, s.k, size)
        sums = Sums.zeros(len(layers), s.k, pair.d_model)
        rounds: list[dict[str, Callable[[], Any]]] = [
            {"floor": partial(floor_pass, pair, b), "difflens": partial(sums.add_pair, pair, b, layers)}
            for b in dl_batches]
        seconds = interleaved(rounds)
        rates = _rates({"floor": n_windows, "difflens": n_windows}, seconds)
        traces = 2 * len(dl_batches)
        out.append({"batch_size": size, "texts": n_windows, "texts_per_s": rates,
                    "floor_ratio": round(rates["difflens"] / rates["floor"], 3),
                    "overhead_ms_per_trace": round(1000 * (seconds["difflens"] - seconds["floor"]) / traces, 2)})
    return out


def scale_n(s: Settings, workdir: Path, on_result: Callable[[Any], None] | None = None) -> list[dict[str, Any]]:
    """`compute_adl` end to end (corpus file read, tokenised, batched, summed, stored) for each n."""
    out = []
    for n in s.ns:
        corpus = write_corpus(workdir / f"corpus-{n}.txt", n)
        request = AdlRequest(base=s.base, ft=s.ft, adapter=s.adapter, corpus=str(corpus), n=n, k=s.k,
                             device=s.device, dtype=s.dtype, batch_size=s.batch_size, seed=0)
        seconds, outcome = clock(partial(compute_adl, request))
        if on_result is not None:
            on_result(outcome.result)
        out.append({"n": n, "seconds": round(seconds, 2), "texts_per_s": round(n / seconds, 2)})
    return out
