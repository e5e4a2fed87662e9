"""Compute (or fetch) the mean activation difference of a pair: batched, checkpointed, cancellable.

A checkpoint of the running sums is written atomically every few seconds and on cancel; a restarted run
with the same inputs resumes from it. The final file appears only when complete.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from engine.adl.accumulate import Sums
from engine.adl.request import KIND, AdlRequest
from engine.corpus.sources import load_examples
from engine.corpus.windows import Window, batches, make_windows, sample_self
from engine.errors import JobCancelled, UserError
from engine.jobs import JobContext
from engine.models.cache import MODELS
from engine.models.pair import ModelPair
from store import results
from store.atomic import atomic_path
from store.paths import tensors_dir

CHECKPOINT_EVERY_S = 10.0


@dataclass
class AdlOutcome:
    run: str
    cached: bool
    result: results.Result


def checkpoint_path(run_id: str):
    return tensors_dir() / f"{run_id}.checkpoint.safetensors"


def corpus_windows(request: AdlRequest, pair: ModelPair) -> tuple[list[Window], int]:
    corpus = request.corpus_spec
    if corpus.kind == "self":
        with pair.use("base") as model:
            return sample_self(model, request.n, request.k, request.seed), 0
    windows, skipped = make_windows(pair.tokenizer, load_examples(corpus, request.n, request.seed), request.k)
    if not windows:
        raise UserError(f"no text in corpus {corpus.label()!r} has {request.k} tokens",
                        "use longer texts or a smaller -k")
    return windows, skipped


def compute_adl(request: AdlRequest, ctx: JobContext | None = None) -> AdlOutcome:
    """The run for `request`, from the cache when present and intact, else computed now."""
    ctx = ctx or JobContext()
    request.validate()
    pair = MODELS.pair(request.base_spec, request.ft_spec, request.placement)
    layers = request.resolve_layers(pair.n_layers)
    inputs = request.inputs(pair.n_layers)
    run_id = results.key_for(KIND, inputs)
    if (hit := results.load(run_id)) is not None:
        return AdlOutcome(run_id, True, hit)
    started = time.monotonic()
    windows, skipped = corpus_windows(request, pair)
    batch_size = request.batch_size
    while True:
        sums = _resume(run_id, len(layers), request.k, pair.d_model)
        try:
            _accumulate(pair, windows, layers, request.k, batch_size, sums, run_id, ctx)
            break
        except torch.cuda.OutOfMemoryError as exc:
            torch.cuda.empty_cache()
            if batch_size == 1:
                raise UserError("out of GPU memory even with batch size 1",
                                "use --dtype bfloat16, fewer --layers, or a larger GPU") from exc
            batch_size = max(1, batch_size // 2)
    means = {name: t.numpy() for name, t in sums.means().items()}
    means["layers"] = np.asarray(layers, dtype=np.int64)
    meta = _meta(request, pair, layers, sums.count, skipped, windows, time.monotonic() - started)
    stored = results.save(KIND, inputs, means, meta, seconds=meta["seconds"])
    checkpoint_path(run_id).unlink(missing_ok=True)
    return AdlOutcome(run_id, False, stored)


def _accumulate(pair: ModelPair, windows: list[Window], layers: list[int], k: int, batch_size: int,
                sums: Sums, run_id: str, ctx: JobContext) -> None:
    """Add the windows not yet in `sums` (the first `sums.count` are done), checkpointing as it goes."""
    total = len(windows)
    last_save = time.monotonic()
    try:
        for _, batch in batches(windows[sums.count:], k, batch_size, pair.tokenizer.pad_token_id):
            sums.add(pair, batch, layers)
            if time.monotonic() - last_save > CHECKPOINT_EVERY_S:
                _save_checkpoint(run_id, sums)
                last_save = time.monotonic()
            ctx.progress(sums.count, total, f"{sums.count}/{total} texts")
    except JobCancelled:
        _save_checkpoint(run_id, sums)
        raise


def _save_checkpoint(run_id: str, sums: Sums) -> None:
    with atomic_path(checkpoint_path(run_id)) as tmp:
        save_file(sums.as_tensors(), str(tmp))


def _resume(run_id: str, n_layers: int, k: int, d_model: int) -> Sums:
    """The running sums from a checkpoint of this run; a damaged one is discarded, never trusted."""
    path = checkpoint_path(run_id)
    if path.exists():
        try:
            sums = Sums.from_tensors(load_file(str(path)))
            if sums.diff.shape == (n_layers, k, d_model):
                return sums
        except Exception:  # a torn or foreign checkpoint: start over
            pass
        path.unlink(missing_ok=True)
    return Sums.zeros(n_layers, k, d_model)


def _meta(request: AdlRequest, pair: ModelPair, layers: list[int], count: int, skipped: int,
          windows: list[Window], seconds: float) -> dict[str, Any]:
    sample = [pair.tokenizer.decode(list(w.ids[w.start: w.start + request.k])) for w in windows[:8]]
    return {"request": request.to_json(), "base_label": request.base_spec.label(),
            "ft_label": request.ft_spec.label(), "corpus_label": request.corpus_spec.label(),
            "n_texts": count, "skipped": skipped, "k": request.k, "layers": layers,
            "n_layers": pair.n_layers, "d_model": pair.d_model, "dtype": request.placement.dtype_name,
            "device": request.placement.device, "seconds": round(seconds, 3), "sample_windows": sample}
