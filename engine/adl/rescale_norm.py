"""The norm a from-BOS (`--protocol paper`) run rescales its steering and Patchscope vectors to, as the reference
computes it: the finetuned model's mean activation norm per layer over token positions 5–127 of each text cut
to 128 tokens (BOS included; shorter texts left out), on the run's own corpus (diffing-toolkit,
`src/diffing/methods/activation_difference_lens/method.py` `_compute_and_save_norms`, `skip_tokens = 5`, over
the `n = 128` tokens of `load_and_tokenize_dataset`; a chat reads the 3 tokens before the assistant turn and
128 of it, `pre_assistant_k` + `n`, skipping the first 5 the same way).

A default run's norm comes with the run itself (its read positions after the first); this one needs a
128-token forward of the finetuned model per text, so it is its own result keyed by the run, computed the first
time a vector of the run is rescaled and read from the store after that."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from engine.adl.accumulate import check_finite, read_positions
from engine.adl.runs import AdlRun
from engine.corpus.sources import generic_questions, load_examples
from engine.corpus.windows import CHAT_OFFSET, Window, batches, chat_windows, sample_chat, sample_self, text_windows
from engine.errors import UserError
from engine.jobs import JobContext
from engine.models.loading import LoadedModel
from store import results

NORM_KIND = "rescale_norm"
TEXT_TOKENS = 128  # the reference's `n`: tokens per text, BOS included
SKIP_TOKENS = 5    # the reference's `skip_tokens`: the first positions of each text are left out
CHAT_TOKENS = CHAT_OFFSET + TEXT_TOKENS  # a chat: `pre_assistant_k` = 3 tokens before the assistant turn + n
LABEL = "reference: ft mean over positions 5-127 of 128-token texts"


def norm_key(run: AdlRun) -> dict[str, str]:
    """What a cache key of rescaled vectors adds for `run`'s norm: nothing for a default run (its keys predate the
    reference's norm), the reference's convention for a from-BOS run."""
    return {"norm": LABEL} if run.request.from_bos else {}


def layer_norm(run: AdlRun, layer: int) -> float:
    """The norm vectors at `layer` are rescaled to: the reference's (`reference_norms`) for a from-BOS run, else
    the mean finetuned norm over the run's read positions after the first (position 0's outsized vector would
    otherwise set the scale)."""
    row = run.layer_index(layer)
    if run.request.from_bos:
        return float(reference_norms(run)[row])
    norms = run.ft_norm[row]
    return float(norms[1:].mean() if norms.numel() > 1 else norms.mean())


def reference_norms(run: AdlRun, ctx: JobContext | None = None) -> Float[Tensor, " layer"]:
    """Per layer of the run, the reference's rescaling norm (stored; computed on the first call)."""
    inputs = {"run": run.run_id, "text_tokens": TEXT_TOKENS, "skip_tokens": SKIP_TOKENS}
    if (hit := results.lookup(NORM_KIND, inputs)) is not None:
        return torch.from_numpy(hit.tensors["ft_norm"].copy())
    ctx = ctx or JobContext()
    pair = run.pair()
    with pair.use("base") as base:
        windows = _windows(run, base, ctx)
    layers = run.layers.tolist()
    total = torch.zeros(len(layers), dtype=torch.float64)
    count = 0
    with pair.use("ft") as ft:
        for read in sorted({len(w.ids) - w.start for w in windows}):
            group = [w for w in windows if len(w.ids) - w.start == read]
            for _, batch in batches(group, read, run.request.batch_size, ft.tokenizer.pad_token_id):
                acts = read_positions(ft, batch, layers)
                check_finite(acts, layers, "ft")
                total += acts.norm(dim=-1).double().sum(dim=(1, 2)).cpu()
                count += batch.positions.numel()
                ctx.progress(count, None, f"rescaling norm: {count} positions")
    norms = (total / count).float()
    meta: dict[str, Any] = {"run": run.run_id, "texts": len(windows), "positions": count, "label": LABEL}
    results.save(NORM_KIND, inputs, {"ft_norm": norms.numpy().astype(np.float32)}, meta)
    return norms


def _windows(run: AdlRun, base: LoadedModel, ctx: JobContext) -> list[Window]:
    """The run's texts at the reference's length, each window starting at its first read position (the 6th)."""
    request, tokenizer = run.request, base.tokenizer
    corpus = request.corpus_spec
    bos = 1 if tokenizer.bos_token_id is not None else 0

    def sampled(done: int, total: int) -> None:
        ctx.progress(done, total, f"rescaling norm: sampling {done}/{total} texts of {TEXT_TOKENS} tokens")

    if corpus.kind == "self":
        full = sample_self(base, request.n, TEXT_TOKENS - bos, request.seed, on_batch=sampled, from_bos=True)
    elif corpus.kind == "chat":
        full = sample_chat(base, generic_questions(request.n, request.seed), CHAT_TOKENS, request.seed,
                           on_batch=sampled)
    else:
        examples = load_examples(corpus, request.n, request.seed)
        texts, _ = text_windows(tokenizer, [e for e in examples if isinstance(e, str)], TEXT_TOKENS - bos, True)
        chats, _ = chat_windows(tokenizer, [e for e in examples if isinstance(e, list)], CHAT_TOKENS)
        full = texts + chats
    if not full:
        raise UserError(f"no text of corpus {corpus.label()!r} has {TEXT_TOKENS} tokens, which the reference's "
                        f"rescaling norm reads (positions {SKIP_TOKENS}-{TEXT_TOKENS - 1} of each text)",
                        "run --protocol paper on --corpus self: (sampled at that length) or a corpus of longer texts")
    return [Window(w.ids, w.start + SKIP_TOKENS) for w in full]
