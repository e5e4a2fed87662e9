"""The base side of an ADL run as its own cached result, shared by every finetune of that base.

mean(ft − base) = mean(ft) − mean(base), so for one base, corpus, n, k, seed, dtype and layers the base
half of the sums is the same numbers whatever the finetune: a board of twenty finetunes of one base runs
the base pass once. The result keeps the float64 sums (not means, so reuse is bit-for-bit the joint
arithmetic) and the corpus windows, so a `self:` corpus is not sampled again either. Where the models
ran (device, batch size, sequential mode) is not part of the key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from engine.adl.accumulate import Sums
from engine.adl.request import AdlRequest
from engine.corpus.windows import Window
from store import results

BASE_KIND = "adl-base"
PAD = -1


@dataclass
class BasePass:
    """A finished base pass: the sums the joint run would have accumulated for the base side."""

    key: str
    base: Float[Tensor, "layer pos d_model"]
    base_norm: Float[Tensor, "layer pos"]
    windows: list[Window]
    skipped: int

    def fill(self, sums: Sums) -> None:
        """Put the base side into `sums` (whatever a checkpoint held for it), leaving the ft side as is."""
        sums.base, sums.base_norm = self.base.clone(), self.base_norm.clone()
        sums.counts[0] = len(self.windows)


def base_inputs(request: AdlRequest, n_layers: int) -> dict[str, Any]:
    """The run's inputs without the finetune: what the base side depends on."""
    return {name: value for name, value in request.inputs(n_layers).items() if name != "ft"}


def base_key(request: AdlRequest, n_layers: int) -> str:
    return results.key_for(BASE_KIND, base_inputs(request, n_layers))


def load_base_pass(request: AdlRequest, n_layers: int) -> BasePass | None:
    """The cached base pass for `request`, or None (absent, damaged, or from an unfinished run)."""
    key = base_key(request, n_layers)
    stored = results.load(key)
    if stored is None or stored.kind != BASE_KIND:
        return None
    t = stored.tensors
    return BasePass(key, torch.from_numpy(t["base"].copy()), torch.from_numpy(t["base_norm"].copy()),
                    _unpack(t["window_ids"], t["window_starts"]), int(stored.meta["skipped"]))


def save_base_pass(request: AdlRequest, n_layers: int, sums: Sums, windows: list[Window], skipped: int) -> str:
    """Store the base side of finished `sums`; returns its key."""
    ids, starts = _pack(windows)
    tensors = {"base": sums.base.numpy(), "base_norm": sums.base_norm.numpy(), "window_ids": ids.numpy(),
               "window_starts": starts.numpy()}
    meta = {"base_label": request.base_spec.label(), "corpus_label": request.corpus_spec.label(),
            "n_texts": sums.counts[0], "skipped": skipped, "k": request.k}
    return results.save(BASE_KIND, base_inputs(request, n_layers), tensors, meta).key


def _pack(windows: list[Window]) -> tuple[Int[Tensor, "n seq"], Int[Tensor, " n"]]:
    seq = max(len(w.ids) for w in windows)
    ids = torch.full((len(windows), seq), PAD, dtype=torch.int64)
    for row, window in enumerate(windows):
        ids[row, : len(window.ids)] = torch.tensor(window.ids)
    return ids, torch.tensor([w.start for w in windows], dtype=torch.int64)


def _unpack(ids: np.ndarray, starts: np.ndarray) -> list[Window]:
    return [Window(tuple(int(t) for t in row if t != PAD), int(start)) for row, start in zip(ids, starts, strict=True)]
