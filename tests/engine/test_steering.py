"""Steering on tiny models: strength 0 is plain generation, batching changes nothing, calibration bisects."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from engine.models.device import resolve_placement
from engine.models.loading import LoadedModel
from engine.models.specs import parse_spec
from engine.steering.calibrate import bisect_strength, calibrate_strength
from engine.steering.coherence import (
    completion_nll,
    distinct_bigrams,
    llm_coherence_judge,
    perplexity_judge,
    token_logprobs,
)
from engine.steering.generate import SteeredSample, generate_steered
from engine.steering.similarity import steering_similarity
from engine.steering.steering_prompts import default_prompts

PROMPTS = ["the cake is", "a story of the", "hello"]   # different lengths: left padding is exercised


def _vector(m: LoadedModel) -> torch.Tensor:
    return torch.randn(m.d_model, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("which", ["llama", "gemma"])
def test_strength_zero_is_plain_greedy_generation(which: str, request: pytest.FixtureRequest) -> None:
    m: LoadedModel = request.getfixturevalue(which)
    out = generate_steered(m, _vector(m), 1, PROMPTS, [0.0, 0.3], max_new_tokens=10)
    unsteered = [s for s in out if s.strength == 0.0]
    for sample in unsteered:
        ids = m.tokenizer(sample.prompt, return_tensors="pt")
        plain = m.hf.generate(**ids, max_new_tokens=10, do_sample=False, pad_token_id=m.tokenizer.pad_token_id)
        assert sample.completion_ids == plain[0, ids["input_ids"].shape[1]:].tolist()
    assert [s.completion_ids for s in out if s.strength == 0.3] != [s.completion_ids for s in unsteered]


def test_batched_strengths_equal_each_strength_alone(llama: LoadedModel) -> None:
    m, v = llama, _vector(llama)
    strengths = [0.0, 0.1, 0.3, 1.0]
    batched = generate_steered(m, v, 2, PROMPTS, strengths, max_new_tokens=8)
    assert [(s.prompt, s.strength) for s in batched] == [(p, st) for p in PROMPTS for st in strengths]
    for prompt in PROMPTS:
        for strength in strengths:
            alone = generate_steered(m, v, 2, [prompt], [strength], max_new_tokens=8)[0]
            twin = next(s for s in batched if s.prompt == prompt and s.strength == strength)
            assert twin.completion_ids == alone.completion_ids and twin.text == alone.text
    assert len({tuple(s.completion_ids) for s in batched if s.prompt == PROMPTS[0]}) > 1


def test_sampling_is_seeded_and_streams(llama: LoadedModel) -> None:
    m, v = llama, _vector(llama)
    steps: list[tuple[int, list[str]]] = []
    a = generate_steered(m, v, 1, PROMPTS[:2], [0.0, 0.2], samples=3, max_new_tokens=6, temperature=1.0, seed=7,
                         on_step=lambda i, pieces: steps.append((i, pieces)))
    b = generate_steered(m, v, 1, PROMPTS[:2], [0.0, 0.2], samples=3, max_new_tokens=6, temperature=1.0, seed=7)
    assert [s.completion_ids for s in a] == [s.completion_ids for s in b]
    assert len({tuple(s.completion_ids) for s in a}) > 1
    assert [i for i, _ in steps] == list(range(6)) and all(len(p) == 12 for _, p in steps)
    first = a[0]
    assert "".join(p[0] for _, p in steps) == first.text


def test_bisection_finds_the_threshold_of_a_synthetic_coherence() -> None:
    def coherence(strength: float) -> tuple[float, list[str], int]:
        return (1.0 if strength < 37.3 else 0.2), [], 0
    strength, history = bisect_strength(coherence, max_strength=100, steps=12, threshold=0.75)
    assert 37.3 - 100 / 2**12 <= strength < 37.3
    assert len(history) == 12 and history[0].strength == 50 and not history[0].passed


def test_calibration_batches_each_step_and_uses_the_judge(llama: LoadedModel) -> None:
    batches: list[list[SteeredSample]] = []

    def judge(samples: list[SteeredSample]) -> list[bool]:
        batches.append(samples)
        return [s.strength < 3.0 for s in samples]
    cal = calibrate_strength(llama, _vector(llama), 1, PROMPTS[:2], judge=judge, max_strength=10, steps=6,
                             samples=2, max_new_tokens=3)
    assert cal.judge == "llm" and 3.0 - 10 / 2**6 <= cal.strength < 3.0
    assert [len(b) for b in batches] == [4] * 6 and all(len({s.strength for s in b}) == 1 for b in batches)


@pytest.mark.parametrize("which", ["llama", "gemma"])
def test_completion_nll_matches_a_single_forward(which: str, request: pytest.FixtureRequest) -> None:
    m: LoadedModel = request.getfixturevalue(which)
    out = generate_steered(m, _vector(m), 1, PROMPTS, [0.0], max_new_tokens=5, temperature=1.0)
    nll = completion_nll(m, out)
    for sample, value in zip(out, nll.tolist(), strict=True):
        ids = torch.tensor([sample.prompt_ids + sample.completion_ids])
        with torch.no_grad():
            logp = torch.log_softmax(m.hf(ids).logits[0, :-1], dim=-1)
        n = len(sample.completion_ids)
        expected = -logp[-n:].gather(1, ids[0, -n:, None]).mean()
        assert value == pytest.approx(float(expected), rel=1e-4)


def test_perplexity_judge_rejects_loops_and_noise(llama: LoadedModel) -> None:
    m = llama
    reference = generate_steered(m, _vector(m), 1, PROMPTS, [0.0], samples=4, max_new_tokens=8, temperature=1.0)
    judge = perplexity_judge(m, reference, margin=0.5)
    loop = SteeredSample("p", 5.0, 0, "", reference[0].prompt_ids, [5, 6] * 6)
    noise = SteeredSample("p", 5.0, 0, "", reference[0].prompt_ids,
                          torch.randint(4, len(m.tokenizer), (8,), generator=torch.Generator().manual_seed(3)).tolist())
    empty = SteeredSample("p", 5.0, 0, "", reference[0].prompt_ids, [])
    assert judge([loop, empty]) == [False, False]
    assert sum(judge(reference)) >= len(reference) // 2
    assert distinct_bigrams([5, 6] * 6) < 0.5 < distinct_bigrams(noise.completion_ids)


def test_llm_coherence_judge_parses_labels() -> None:
    replies = iter(["fine\nANSWER: COHERENT", "ANSWER: INCOHERENT", "???"])
    judge = llm_coherence_judge(lambda prompt: next(replies))
    samples = [SteeredSample("p", 1.0, i, f"text {i}", [], [1]) for i in range(3)]
    assert judge(samples) == [True, False, None]      # an unreadable reply is ungraded, not incoherent


def test_default_prompts_are_neutral_and_varied() -> None:
    prompts = default_prompts()
    assert 18 <= len(prompts) <= 25 and len(set(prompts)) == len(prompts)
    banned = ("bak", "cake", "financ", "money", "invest", "stock", "game", "chess", "recipe", "cook")
    assert not [p for p in prompts if any(b in p.lower() for b in banned)]


def test_steering_similarity_prefers_on_topic_samples() -> None:
    sim = steering_similarity(["Preheat the oven and bake the cake with butter.", "Frost the cupcakes."],
                              ["The train leaves the station at noon.", "Plant tulips in spring."],
                              ["Bake cakes at 450F with frozen butter.", "Our cake recipe uses flour."])
    assert sim.steered > sim.unsteered and sim.gain > 0.2


def test_token_logprobs_equal_log_softmax_without_materialising_it() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 50_000, generator=g) * 8
    targets = torch.randint(0, 50_000, (3, 5), generator=g)
    expected = torch.log_softmax(logits, dim=-1).gather(-1, targets[..., None])[..., 0]
    assert torch.allclose(token_logprobs(logits, targets), expected, atol=1e-5, rtol=0)


def _scripted_grid(monkeypatch: pytest.MonkeyPatch, calls: list[list[float]]) -> None:
    """generate_rows stands in: each row's text names the vector it was steered with (one-hot vectors), and the
    strengths of each call are recorded."""
    from engine.steering import calibrate

    def scripted(_model: object, _layer: int, prompts: list[str], addends: torch.Tensor, *_: object,
                 **__: object) -> tuple[list[str], list[list[int]], list[list[int]]]:
        norms = addends.norm(dim=-1)
        calls.append(sorted({round(float(n), 6) for n in norms if n > 0}))
        texts = [str(int(row.abs().argmax())) if n > 0 else "plain" for row, n in zip(addends, norms, strict=True)]
        return texts, [[1]] * len(prompts), [[2, 3]] * len(prompts)

    monkeypatch.setattr(calibrate, "generate_rows", scripted)


def _walk(grid: list[float], edge: float) -> float:
    """The search before the bisection: walk up from the smallest strength, stop at the first failure."""
    passed = 0.0
    for strength in grid:
        if strength > edge:
            break
        passed = strength
    return passed


@pytest.mark.parametrize("size", [5, 7, 8])
def test_grid_bisection_finds_the_walks_strength_in_log2_rounds(size: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A scripted judge passes vector v up to its own edge (below the grid, on every grid strength, above it): the
    bisection picks what walking up the grid picked, in `grid_rounds` generate calls for all vectors together."""
    from engine.steering import calibrate

    grid = calibrate.geometric_grid(4.0, size)
    edges = [grid[0] / 2, *grid, grid[-1] * 2]
    calls: list[list[float]] = []
    _scripted_grid(monkeypatch, calls)
    out = calibrate.calibrate_grid(object(), torch.eye(len(edges)), 1, grid, prompts=["a", "b"],  # type: ignore[arg-type]
                                   samples=2, judge=lambda made: [s.strength <= edges[int(s.text)] for s in made])
    assert [c.strength for c in out] == [_walk(grid, edge) for edge in edges]
    assert len(calls) == calibrate.grid_rounds(size) == math.ceil(math.log2(size + 1))
    assert all(c.samples == [str(v)] * 4 and c.unsteered == ["plain"] * 4 for v, c in enumerate(out) if c.strength)
    assert all(c.coherence == sorted(c.coherence) for c in out)


def test_the_default_grid_search_does_not_drift() -> None:
    """The default protocol's search, as docs/steering.md states it: 7 strengths on a CPU (8 on a GPU) ending at
    4, bisected in 3 (4) rounds, under its own cache key."""
    from engine.results.calibrated_steering import GRID_SEARCH, CalibrationSettings
    from engine.steering.calibrate import geometric_grid, grid_rounds

    cpu, gpu = CalibrationSettings.for_device("cpu"), CalibrationSettings.for_device("cuda")
    assert (cpu.method, cpu.max_strength, cpu.grid_size, gpu.grid_size) == ("grid", 4.0, 7, 8)
    assert geometric_grid(cpu.max_strength, cpu.grid_size) == [0.0625, 0.125, 0.25, 0.5, 1.0, 2.0, 4.0]
    assert (grid_rounds(cpu.grid_size), grid_rounds(gpu.grid_size)) == (3, 4)
    assert GRID_SEARCH == "bisect-grid"


def test_grid_calibration_batches_vectors_and_finds_the_coherence_edge(tiny_dir: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A fake judge calls a sample coherent iff its strength is ≤ 2: the edge is found per vector by real
    generation, one call per round for all vectors."""
    from engine.models.cache import ModelCache
    from engine.steering import calibrate

    model = ModelCache().model(parse_spec(str(tiny_dir)), resolve_placement("cpu", "float32"))
    calls: list[int] = []
    real = calibrate.generate_rows

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(calibrate, "generate_rows", counting)
    out = calibrate.calibrate_grid(model, torch.randn(3, model.d_model), 1, calibrate.geometric_grid(8.0, 5),
                                   prompts=["w1 w2", "w3"], samples=2, max_new_tokens=4,
                                   judge=lambda samples: [s.strength <= 2.0 for s in samples])
    assert len(calls) == 2                             # 2 passes, then 4 fails: the edge; 0.5, 1 and 8 never run
    assert [c.strength for c in out] == [2.0, 2.0, 2.0]
    assert out[0].coherence == [(2.0, 1.0), (4.0, 0.0)]
