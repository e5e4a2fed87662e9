"""ADL runs for many adapters of one base at once: one base pass, then mixed-adapter batches.

When several LoRA finetunes of one base wait on the same corpus, each batch of texts is repeated once per
adapter and every copy runs with its own adapter (peft's per-row `adapter_names`), so one forward of the
shared base weights serves them all. Each run is stored exactly as `compute_adl` stores it (same key, same
tensors), so the board's per-pair triage then finds it cached.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.adl.accumulate import Sums, check_finite, read_positions
from engine.adl.base_pass import load_base_pass
from engine.adl.compute import AdlOutcome, compute_adl, finish_run
from engine.adl.request import AdlRequest
from engine.adl.stored_runs import KIND
from engine.corpus.windows import Batch, batches
from engine.errors import UserError
from engine.jobs import JobContext
from engine.models.adapters import mixed_adapters
from engine.models.cache import MODELS
from engine.models.loading import LoadedModel
from store import results


@dataclass
class _Member:
    request: AdlRequest
    view: LoadedModel
    sums: Sums


def group_key(request: AdlRequest) -> tuple[Any, ...] | None:
    """What adapter runs must share to ride in one batch (None: this request cannot be grouped)."""
    ft = request.ft_spec
    if not ft.adapter or ft.base != request.base_spec or request.backend != "local" or request.device_map \
            or request.place:
        return None
    return (request.base_spec, request.corpus, request.n, request.k, request.seed, request.layers,
            request.placement, request.batch_size)


def precompute_adapters(requests: list[AdlRequest], ctx: JobContext,
                        on_error: Callable[[AdlRequest, Exception], None] | None = None) -> list[AdlOutcome]:
    """Compute every not-yet-cached run of `requests` that has an adapter sibling (same base and corpus
    settings) in mixed-adapter batches; the rest are left to `compute_adl`. An adapter that does not load is
    passed to `on_error` and left out (its pair reports the error when it runs alone)."""
    groups: dict[tuple[Any, ...], list[AdlRequest]] = {}
    for request in requests:
        if (key := group_key(request)) is not None:
            groups.setdefault(key, []).append(request)
    outcomes: list[AdlOutcome] = []
    for members in groups.values():
        if len(members) > 1:
            outcomes += _group(members, ctx, on_error)
    return outcomes


def _group(requests: list[AdlRequest], ctx: JobContext,
           on_error: Callable[[AdlRequest, Exception], None] | None) -> list[AdlOutcome]:
    first = requests[0]
    base = MODELS.model(first.base_spec, first.placement)
    members = []
    for request in requests:
        if results.load(results.key_for(KIND, request.inputs(base.n_layers))) is not None:
            continue
        try:
            members.append(_Member(request, MODELS.model(request.ft_spec, request.placement),
                                   Sums.zeros(len(request.resolve_layers(base.n_layers)), request.k, base.d_model)))
        except UserError as exc:
            if on_error is not None:
                on_error(request, exc)
    if len(members) < 2:
        return []
    started = time.monotonic()
    if load_base_pass(first, base.n_layers) is None:  # the first run computes and stores the base pass
        compute_adl(members.pop(0).request, ctx)
    base_pass = load_base_pass(first, base.n_layers)
    if base_pass is None:
        raise UserError("the base pass of this adapter group was not stored", "run the pairs one by one")
    for member in members:
        base_pass.fill(member.sums)
    layers = first.resolve_layers(base.n_layers)
    windows = base_pass.windows
    per_batch = max(1, first.batch_size // len(members))
    for _, batch in batches(windows, first.k, per_batch, base.tokenizer.pad_token_id):
        _mixed_step(members, batch, layers)
        done = members[0].sums.counts[1]
        ctx.progress(done, len(windows), f"{done}/{len(windows)} texts × {len(members)} adapters (mixed batches)")
    return [finish_run(m.request, base.tokenizer, base.n_layers, base.d_model, m.sums, windows, base_pass.skipped,
                       base_pass, started) for m in members]


def _mixed_step(members: list[_Member], batch: Batch, layers: list[int]) -> None:
    """One forward: the batch repeated once per adapter, each copy's rows with its own adapter."""
    rows = batch.input_ids.shape[0]
    copies = len(members)
    mixed = Batch(batch.input_ids.repeat(copies, 1), batch.attention_mask.repeat(copies, 1),
                  batch.positions.repeat(copies, 1))
    with mixed_adapters([m.view for m in members], rows) as model:
        acts = read_positions(model, mixed, layers)
    check_finite(acts, layers, "ft")
    for index, member in enumerate(members):
        member.sums.add_side("ft", acts[:, index * rows: (index + 1) * rows])
