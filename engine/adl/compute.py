"""Compute (or fetch) the mean activation difference of a pair: batched, checkpointed, cancellable.

Joint mode runs both sides on each batch; `sequential` runs every batch through the base model, releases
it, then through the finetuned one, so only one model is ever in memory. A checkpoint of the running sums
is written atomically every few seconds and on cancel; a restarted run with the same inputs resumes from
it. The final file appears only when complete. The base side is stored as its own result (`base_pass`): a
later pair with the same base and corpus settings runs only its finetuned pass.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from engine.adl.accumulate import Sums, check_finite, read_positions
from engine.adl.base_pass import BasePass, load_base_pass, save_base_pass
from engine.adl.request import AdlRequest
from engine.adl.stored_runs import KIND
from engine.corpus.sources import generic_questions, load_examples
from engine.corpus.windows import Window, batches, make_windows, sample_chat, sample_self
from engine.errors import JobCancelled, UserError
from engine.jobs import JobContext
from engine.models.cache import MODELS
from engine.models.loading import LoadedModel
from engine.models.memory import plan_memory
from engine.models.pair import ModelPair, Shape, Side, check_diffable
from engine.ndif.limits import RequestLimits
from engine.ndif.ndif_errors import ndif_errors
from store import results
from store.atomic import atomic_path
from store.paths import tensors_dir

CHECKPOINT_EVERY_S = float(os.environ.get("DIFFLENS_CHECKPOINT_EVERY_S", "10"))  # shorter: tests, preemptible boxes


@dataclass
class AdlOutcome:
    run: str
    cached: bool
    result: results.Result
    memory_plan: str | None = None


def checkpoint_path(run_id: str) -> Path:
    return tensors_dir() / f"{run_id}.checkpoint.safetensors"


def corpus_windows(request: AdlRequest, tokenizer: Any, base: LoadedModel,
                   ctx: JobContext) -> tuple[list[Window], int]:
    corpus = request.corpus_spec
    if corpus.kind == "self":
        def report(done: int, total: int) -> None:  # progress, and where a cancel takes effect
            ctx.progress(done, total, f"sampling self: {done}/{total} texts")

        return sample_self(base, request.n, request.k, request.seed, on_batch=report, from_bos=request.from_bos), 0
    if corpus.kind == "chat":
        def answered(done: int, total: int) -> None:
            ctx.progress(done, total, f"answering chat: {done}/{total} questions")

        questions = generic_questions(request.n, request.seed)
        return sample_chat(base, questions, request.k, request.seed, on_batch=answered), 0
    windows, skipped = make_windows(tokenizer, load_examples(corpus, request.n, request.seed), request.k,
                                    request.from_bos)
    if not windows:
        raise UserError(f"no text in corpus {corpus.label()!r} has {request.k} tokens",
                        "use longer texts or a smaller -k")
    return windows, skipped


def compute_adl(request: AdlRequest, ctx: JobContext | None = None) -> AdlOutcome:
    """The run for `request`, from the cache when present and intact, else computed now."""
    ctx = ctx or JobContext()
    request.validate()
    base_spec, ft_spec, placements = request.base_spec, request.ft_spec, request.placements
    placement, remote = placements.base, request.backend == "ndif"
    plan = "NDIF: the weights stay on the server, nothing is loaded here" if remote else None
    if remote and request.corpus_spec.kind in ("self", "chat"):
        raise UserError(f"the {request.corpus_spec.label()} corpus samples from local weights, which --backend ndif "
                        "does not load", "pass --corpus generic: (or a file or hf: dataset) with --backend ndif")
    if (stored := stored_run(request)) is not None:
        return AdlOutcome(stored.key, True, stored)
    if not remote and not (MODELS.has(base_spec, placement) and MODELS.has(ft_spec, placements.ft)):
        memory = plan_memory(base_spec, ft_spec, placement, request.sequential, placements.ft)
        plan = memory.describe()
        ctx.progress(0, None, f"memory plan: {plan}")
        memory.check()
    with ndif_errors(remote):
        if request.sequential and not remote:
            outcome = _compute(request, ctx, None)
        else:
            outcome = _compute(request, ctx, MODELS.pair(base_spec, ft_spec, placement, placements.ft))
    return replace(outcome, memory_plan=plan)


def _first_model(request: AdlRequest) -> LoadedModel:
    """What sequential mode runs first: the base weights (with the adapter attached for an adapter pair)."""
    return MODELS.model(request.ft_spec if _adapter_pair(request) else request.base_spec, request.placement)


def _compute(request: AdlRequest, ctx: JobContext, pair: ModelPair | None) -> AdlOutcome:
    """`pair` for joint mode; None for sequential mode (models come from the cache one at a time)."""
    model = pair.base if pair is not None else _first_model(request)
    tokenizer, n_layers, d_model = model.tokenizer, model.n_layers, model.d_model
    layers = request.resolve_layers(model.n_layers)
    inputs = request.inputs(model.n_layers)
    run_id = results.key_for(KIND, inputs)
    if (hit := results.load(run_id)) is not None:
        return AdlOutcome(run_id, True, hit)
    started = time.monotonic()
    if model.remote:  # one batch = one NDIF request per side, bringing back every grabbed activation
        bytes_per_row = 4 * len(layers) * request.k * model.d_model
        rows = RequestLimits.current(request.max_request_rows).rows_per_request(bytes_per_row, request.batch_size)
        request = replace(request, batch_size=rows)
    base_pass = load_base_pass(request, n_layers)
    if base_pass is not None:
        windows, skipped = base_pass.windows, base_pass.skipped
    else:
        with (ModelPair(model, model) if pair is None else pair).use("base") as base_model:
            windows, skipped = corpus_windows(request, tokenizer, base_model, ctx)
        del base_model
    sums = _resume(run_id, len(layers), request.k, d_model)
    if base_pass is not None:
        base_pass.fill(sums)
    if base_pass is not None and _identical(request):
        sums.mirror_base()
    elif pair is not None and base_pass is not None:
        with pair.use("ft") as ft_model:
            _with_oom_retry(request, partial(_side_pass, ft_model, "ft", windows, 1, layers, request.k, sums,
                                             run_id, ctx, 2 * len(windows)))
    elif pair is not None:
        _with_oom_retry(request, lambda bs: _joint(pair, windows, layers, request.k, bs, sums, run_id, ctx))
    else:
        base_shape = Shape.of(model)
        del model  # only the cache holds the base now, so the ft pass can free it
        _sequential(request, base_shape, windows, layers, sums, run_id, ctx)
    return finish_run(request, tokenizer, n_layers, d_model, sums, windows, skipped, base_pass, started)


def finish_run(request: AdlRequest, tokenizer: Any, n_layers: int, d_model: int, sums: Sums, windows: list[Window],
               skipped: int, base_pass: BasePass | None, started: float) -> AdlOutcome:
    """Store a run whose sums are complete, and its base pass when this run computed it."""
    layers = request.resolve_layers(n_layers)
    inputs = request.inputs(n_layers)
    run_id = results.key_for(KIND, inputs)
    means = {name: t.numpy() for name, t in sums.means().items()}
    means["layers"] = np.asarray(layers, dtype=np.int64)
    meta = _meta(request, tokenizer, n_layers, d_model, layers, sums.counts[0], skipped, windows,
                 time.monotonic() - started)
    meta["base_pass"] = base_pass.key if base_pass else save_base_pass(request, n_layers, sums, windows, skipped)
    meta["base_pass_reused"] = base_pass is not None
    stored = results.save(KIND, inputs, means, meta, seconds=meta["seconds"])
    checkpoint_path(run_id).unlink(missing_ok=True)
    return AdlOutcome(run_id, False, stored)


def stored_run(request: AdlRequest) -> results.Result | None:
    """The stored run for `request` without loading a model: a run's key depends on the model's layer count,
    which each stored run records, so the request's inputs are rebuilt for each count seen."""
    counts = {int(r["meta"]["n_layers"]) for r in results.list_results(KIND)
              if isinstance(r["meta"].get("n_layers"), int)}
    for n_layers in sorted(counts):
        with contextlib.suppress(UserError):  # layers out of range for this count: not this run
            if (hit := results.load(request.run_id(n_layers))) is not None:
                return hit
    return None


def _with_oom_retry(request: AdlRequest, step: Any) -> None:
    """Run `step(batch_size)`, halving the batch on CUDA out-of-memory (sums so far are kept)."""
    batch_size = request.batch_size
    while True:
        try:
            step(batch_size)
            return
        except torch.cuda.OutOfMemoryError as exc:
            torch.cuda.empty_cache()
            if batch_size == 1:
                raise UserError("out of GPU memory even with batch size 1",
                                "use --dtype bfloat16, --sequential, fewer --layers, or a larger GPU") from exc
            batch_size = max(1, batch_size // 2)


def _joint(pair: ModelPair, windows: list[Window], layers: list[int], k: int, batch_size: int, sums: Sums,
           run_id: str, ctx: JobContext) -> None:
    todo = windows[sums.counts[0]:]
    _loop(todo, k, batch_size, pair.tokenizer.pad_token_id, run_id, sums, ctx, len(windows),
          lambda batch: sums.add_pair(pair, batch, layers), lambda: sums.counts[0], 2 if pair.base.remote else 0)


def _sequential(request: AdlRequest, base_shape: Shape, windows: list[Window], layers: list[int], sums: Sums,
                run_id: str, ctx: JobContext) -> None:
    """Base pass, then finetuned pass; separate models are swapped in the cache, never held together."""
    total = 2 * len(windows)
    sides: tuple[Side, Side] = ("base", "ft")
    for index, side in enumerate(sides):
        if sums.counts[index] >= len(windows):
            continue
        if side == "ft" and not _adapter_pair(request):
            MODELS.release(request.base_spec, request.placement)
            loaded = MODELS.model(request.ft_spec, request.placements.ft)
            check_diffable(base_shape, Shape.of(loaded))
        else:
            loaded = _first_model(request)
        with ModelPair(loaded, loaded).use(side) as model:
            _with_oom_retry(request, partial(_side_pass, model, side, windows, index, layers, request.k, sums,
                                             run_id, ctx, total))
        del loaded, model  # let the release before the ft pass free the base weights


def _side_pass(model: LoadedModel, side: Side, windows: list[Window], index: int, layers: list[int], k: int,
               sums: Sums, run_id: str, ctx: JobContext, total: int, batch_size: int) -> None:
    def step(batch: Any) -> None:
        acts = read_positions(model, batch, layers)
        check_finite(acts, layers, side)
        sums.add_side(side, acts)

    _loop(windows[sums.counts[index]:], k, batch_size, model.tokenizer.pad_token_id, run_id, sums, ctx, total,
          step, lambda: sums.counts[0] + (sums.counts[1] if index else 0))


def _identical(request: AdlRequest) -> bool:
    """Both sides are the same weights in the same place (a trajectory's step 0): the diff is zero by definition."""
    return request.ft_spec == request.base_spec and request.placements.ft == request.placements.base


def _adapter_pair(request: AdlRequest) -> bool:
    """Finetuned = base + adapter: one set of weights serves both sides."""
    ft = request.ft_spec
    return bool(ft.adapter) and ft.base == request.base_spec


def _loop(todo: list[Window], k: int, batch_size: int, pad_id: int, run_id: str, sums: Sums, ctx: JobContext,
          total: int, step: Any, done: Any, requests_per_batch: int = 0) -> None:
    """Feed `todo` through `step` batch by batch, reporting progress (per NDIF request when
    `requests_per_batch` > 0) and checkpointing."""
    last_save = time.monotonic()
    sent = 0
    try:
        for _, batch in batches(todo, k, batch_size, pad_id):
            step(batch)
            if time.monotonic() - last_save > CHECKPOINT_EVERY_S:
                _save_checkpoint(run_id, sums)
                last_save = time.monotonic()
            sent += requests_per_batch
            ndif = f", {sent} NDIF requests of ≤{batch_size} rows" if requests_per_batch else ""
            ctx.progress(done(), total, f"{done()}/{total} texts{ndif}")
    except JobCancelled:
        _save_checkpoint(run_id, sums)
        raise


def _save_checkpoint(run_id: str, sums: Sums) -> None:
    tensors = sums.as_tensors()
    with atomic_path(checkpoint_path(run_id)) as tmp:
        save_file(tensors, str(tmp), metadata={"sha256": _digest(tensors)})


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    """A checksum of the sums' names, shapes, dtypes and bytes: a checkpoint is resumed only if it still holds."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}\n".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def _resume(run_id: str, n_layers: int, k: int, d_model: int) -> Sums:
    """The running sums from a checkpoint of this run; a damaged one (checksum, shape) is discarded, never
    trusted."""
    path = checkpoint_path(run_id)
    if path.exists():
        try:
            with safe_open(str(path), framework="pt") as fh:
                recorded = (fh.metadata() or {}).get("sha256")
            tensors = load_file(str(path))
            sums = Sums.from_tensors(tensors)
            if recorded == _digest(tensors) and sums.base.shape == (n_layers, k, d_model):
                return sums
        except Exception:  # a torn or foreign checkpoint: start over
            pass
        path.unlink(missing_ok=True)
    return Sums.zeros(n_layers, k, d_model)


def _meta(request: AdlRequest, tokenizer: Any, n_layers: int, d_model: int, layers: list[int], count: int,
          skipped: int, windows: list[Window], seconds: float) -> dict[str, Any]:
    sample = [tokenizer.decode(list(w.ids[w.start: w.start + request.k])) for w in windows[:8]]
    return {"request": request.to_json(), "base_label": request.base_spec.label(),
            "ft_label": request.ft_spec.label(), "corpus_label": request.corpus_spec.label(),
            "n_texts": count, "skipped": skipped, "k": request.k, "layers": layers,
            "n_layers": n_layers, "d_model": d_model, "dtype": request.placement.dtype_name,
            "device": request.placement.device, "seconds": round(seconds, 3), "sample_windows": sample}
