"""The top-k-first sampler keeps exactly the distribution of transformers' temperature, top-k and top-p warpers,
and local generation samples through it (never a draw over the whole vocabulary)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import GenerationConfig
from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from engine.models.cache import ModelCache
from engine.models.device import resolve_placement
from engine.models.specs import parse_spec
from engine.steering.generate import generate_rows
from engine.steering.truncated_sampling import TruncatedSampler, truncated_sampler


def _transformers_probs(scores: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """What `generate(do_sample=True)` draws from: its warpers in its order, then a softmax."""
    out = TemperatureLogitsWarper(temperature)(None, scores)  # type: ignore[arg-type]
    out = TopKLogitsWarper(top_k)(None, out)  # type: ignore[arg-type]
    if top_p < 1.0:
        out = TopPLogitsWarper(top_p)(None, out)  # type: ignore[arg-type]
    return out.softmax(dim=-1)


@pytest.mark.parametrize(("temperature", "top_k", "top_p"),
                         [(0.7, 64, 0.95), (1.2, 50, 1.0), (1.1, 5, 0.5), (0.3, 1, 0.9), (2.0, 2000, 0.95)])
def test_the_kept_tokens_have_the_warpers_probabilities(temperature: float, top_k: int, top_p: float) -> None:
    scores = torch.randn(6, 1000, generator=torch.Generator().manual_seed(1)) * 4
    _same_probabilities(scores, temperature, top_k, top_p)


def test_a_tie_across_the_kth_score_keeps_every_tied_token_as_transformers_does() -> None:
    scores = torch.randn(3, 1000, generator=torch.Generator().manual_seed(3))
    scores[0, :80] = 9.0
    scores[1, 500:502] = 9.0
    _same_probabilities(scores, 0.7, 64, 1.0)  # (with top-p, which tied tokens it drops is the sort's whim)


def _same_probabilities(scores: torch.Tensor, temperature: float, top_k: int, top_p: float) -> None:
    sampler = TruncatedSampler(temperature, top_k, top_p)
    values, indices = sampler.kept(scores)
    ours = torch.zeros_like(scores).scatter_(-1, indices, values.softmax(dim=-1))
    torch.testing.assert_close(ours, _transformers_probs(scores, temperature, top_k, top_p), atol=1e-6, rtol=1e-5)


def test_a_draw_is_one_kept_token_seeded_by_the_global_generator() -> None:
    scores = torch.randn(8, 5000, generator=torch.Generator().manual_seed(2)) * 3
    sampler = TruncatedSampler(0.7, 64, 0.95)
    torch.manual_seed(5)
    first = sampler(None, scores)  # type: ignore[arg-type]
    torch.manual_seed(5)
    again = sampler(None, scores)  # type: ignore[arg-type]
    assert torch.equal(first, again) and bool(torch.isfinite(first).sum(dim=-1).eq(1).all())
    _, indices = sampler.kept(scores)
    chosen = first.argmax(dim=-1, keepdim=True)
    assert bool((indices == chosen).any(dim=-1).all())


def test_another_warper_in_the_config_leaves_sampling_to_transformers() -> None:
    assert truncated_sampler(GenerationConfig(), 0.7, 64, 0.95) is not None
    assert truncated_sampler(GenerationConfig(min_p=0.1), 0.7, 64, 0.95) is None
    assert truncated_sampler(GenerationConfig(typical_p=0.9), 0.7, 64, 0.95) is None
    assert truncated_sampler(GenerationConfig(), 0.7, 0, 0.95) is None  # no top-k: only a full sort does top-p


def test_local_generation_never_draws_over_the_whole_vocabulary(tiny_dir: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    model = ModelCache().model(parse_spec(str(tiny_dir)), resolve_placement("cpu", "float32"))
    vocab = model.hf.get_output_embeddings().weight.shape[0]
    widths: list[int] = []
    real = torch.multinomial

    def watched(probs: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        widths.append(probs.shape[-1])
        return real(probs, *args, **kwargs)

    monkeypatch.setattr(torch, "multinomial", watched)
    zero = torch.zeros(3, model.d_model)
    texts, _, completions = generate_rows(model, 0, ["the cake", "hello", "w1"], zero, 5, 0.9, seed=4)
    again, _, _ = generate_rows(model, 0, ["the cake", "hello", "w1"], zero, 5, 0.9, seed=4)
    assert widths and max(widths) <= 50 < vocab  # transformers' default top-k 50, drawn among those only
    assert texts == again and all(completions)
