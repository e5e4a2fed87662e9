"""Readouts on tiny models: logit lens by hand, Patchscope touches only `?`, relevance graders."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from engine.models.loading import LoadedModel
from engine.readouts.filters import is_trivial_token
from engine.readouts.logit_lens import logit_lens
from engine.readouts.patchscope import (
    DEFAULT_SCALES,
    IDENTITY_PROMPTS,
    SCALE_MAGNITUDES,
    _patched_top,
    _patched_top_cached,
    identity_batch,
    inject_last,
    patchscope,
    patchscope_grid,
    signed_stability,
)
from engine.readouts.relevance import (
    embedding_token_grader,
    frequent_tokens,
    llm_token_grader,
    token_relevance,
)
from engine.readouts.scale_grader import llm_scale_grader, parse_scale_reply
from engine.readouts.topk import TopTokens


@pytest.mark.parametrize("which", ["llama", "gemma"])
def test_logit_lens_is_unembed_of_norm(which: str, request: pytest.FixtureRequest) -> None:
    m: LoadedModel = request.getfixturevalue(which)
    torch.manual_seed(0)
    vectors = 3 * torch.randn(3, 2, m.d_model)
    got = logit_lens(m, vectors, top_k=7, chunk_cells=4)   # chunking must not matter
    with torch.no_grad():
        by_hand = torch.softmax(m.hf.lm_head(m.hf.model.norm(vectors)), dim=-1)
    probs, ids = by_hand.topk(7, dim=-1)
    assert got.shape == (3, 2)
    assert torch.equal(got.ids, ids)
    torch.testing.assert_close(got.probs, probs)
    assert got.tokens[1, 0, 0] == m.tokenizer.decode([int(ids[1, 0, 0])])
    pairs = got.pairs(2, 1)
    assert len(pairs) == 7 and pairs[0][1] == pytest.approx(float(probs[2, 1, 0]))


def test_default_scales_match_the_reference_grid() -> None:
    fine = [round(0.5 + 0.1 * i, 1) for i in range(16)]
    assert list(SCALE_MAGNITUDES) == [*fine, 3.0, 4.0, 5.0, 10.0, 20.0, 40.0, 60.0, 80.0, 100.0, 120.0, 140.0,
                                      160.0, 180.0, 200.0]
    assert list(DEFAULT_SCALES) == [-s for s in reversed(SCALE_MAGNITUDES)] + list(SCALE_MAGNITUDES)
    assert IDENTITY_PROMPTS == ("man -> man\n1135 -> 1135\nhello -> hello\n?",
                                "bear -> bear\n42 -> 42\nblue -> blue\n?",
                                "921 -> 921\ntarget -> target\nanna -> anna\n?")


def test_identity_batch_pads_left_with_the_positions_each_prompt_has_alone(llama: LoadedModel) -> None:
    m = llama
    prompts = ["man -> man ?", "hello -> hello 1135 -> 1135 ?"]
    batch = identity_batch(m, prompts)
    assert batch.ids.shape == (2, 8) and batch.attention_mask[0].tolist() == [0, 0, 0, 1, 1, 1, 1, 1]
    assert batch.position_ids[0, 3:].tolist() == [0, 1, 2, 3, 4]
    with torch.no_grad():
        padded = m.hf(batch.ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids).logits[:, -1]
        for row, prompt in enumerate(prompts):
            alone = m.hf(m.tokenizer(prompt, return_tensors="pt")["input_ids"]).logits[0, -1]
            torch.testing.assert_close(padded[row], alone, rtol=1e-5, atol=1e-5)


def test_patchscope_injection_changes_only_the_last_position(llama: LoadedModel) -> None:
    m = llama
    ids = m.tokenizer(IDENTITY_PROMPTS[0], return_tensors="pt")["input_ids"].expand(3, -1)
    patches = 4 * torch.randn(3, m.d_model)
    row_layers = torch.tensor([-1, 1, 2])            # a clean row, and rows patched after layers 1 and 2
    with torch.inference_mode(), m.nn.trace(ids):
        clean_out = m.nn_layer(3).output.save()
    with torch.inference_mode(), m.nn.trace(ids):
        inject_last(m, patches, row_layers)
        at_2 = m.nn_layer(2).output.save()
        at_3 = m.nn_layer(3).output.save()
    torch.testing.assert_close(at_3[:, :-1], clean_out[:, :-1], rtol=0, atol=0)
    torch.testing.assert_close(at_3[0], clean_out[0], rtol=0, atol=0)
    assert not torch.allclose(at_3[1:, -1], clean_out[1:, -1])
    torch.testing.assert_close(at_2[2, -1], patches[2])


def test_patchscope_matches_a_hand_written_hook_over_three_prompts(llama: LoadedModel) -> None:
    m = llama
    torch.manual_seed(1)
    vectors = torch.randn(2, m.d_model)
    norms = torch.tensor([0.02, 0.05])   # small beside the tiny model's residual, so each prompt still counts
    prompts = ("man -> man 1135 -> 1135 hello -> hello ?", "cake -> cake w1 -> w1 oven -> oven ?",
               "w7 -> w7 story -> story poem -> poem ?")
    set_k = 12
    result = patchscope(m, vectors, layers=[1, 2], target_norms=norms, scales=[0.5, 1.0, -4.0, 4.0], top_k=5,
                        prompts=prompts, set_k=set_k, max_rows=7)   # 7 rows: two whole prompt groups a forward
    assert result.top.shape == (2, 4) and result.scales == (-4.0, 0.5, 1.0, 4.0)
    assert result.prompts == prompts
    two_of_three: set[int] = set()
    for cell, layer in enumerate([1, 2]):
        for index, scale in enumerate(result.scales):
            patch = vectors[cell] / vectors[cell].norm() * norms[cell] * scale

            def hook(module: torch.nn.Module, args: object, output: torch.Tensor, patch: torch.Tensor = patch
                     ) -> torch.Tensor:
                output = output.clone()
                output[:, -1] = patch
                return output
            handle = m.layers[layer].register_forward_hook(hook)
            try:
                with torch.no_grad():
                    probs = torch.stack([torch.softmax(m.hf(m.tokenizer(p, return_tensors="pt")["input_ids"])
                                                       .logits[0, -1], dim=-1) for p in prompts])
            finally:
                handle.remove()
            tops = [set(row.topk(set_k).indices.tolist()) for row in probs]
            kept = set.intersection(*tops)
            two_of_three |= {t for t in set.union(*tops) - kept if sum(t in top for top in tops) == 2}
            mean = torch.zeros(probs.shape[-1])
            mean[sorted(kept)] = probs[:, sorted(kept)].mean(dim=0)
            top_p, top_i = mean.topk(5)
            got_ids, got_p = result.top.ids[cell, index], result.top.probs[cell, index]
            torch.testing.assert_close(got_p, top_p)
            assert got_ids[got_p > 0].tolist() == top_i[top_p > 0].tolist()
            assert set(got_ids[got_p > 0].tolist()) <= kept
            assert not set(got_ids[got_p > 0].tolist()) & (set.union(*tops) - kept)
    assert two_of_three          # tokens top under two prompts but not the third occurred, and were left out
    assert result.chosen_by == ["stability", "stability"]
    assert all(s in result.scales for s in result.best_scale)
    assert all(set(picks) == {"+", "-"} and picks["-"] < 0 < picks["+"] for picks in result.best_by_sign)
    assert result.best(0).ids.shape == (5,)


@pytest.mark.parametrize("arch", ["llama", "gemma"])
def test_patchscope_prefix_cache_gives_the_full_forward_distributions(arch: str, request: pytest.FixtureRequest
                                                                      ) -> None:
    """The local path (prompt prefixes once in a KV cache, one token per row) against the full forward of every
    row (the NDIF path): same top tokens, probabilities within 1e-4, clean rows and several layers mixed."""
    m: LoadedModel = request.getfixturevalue(arch)
    torch.manual_seed(3)
    batch = identity_batch(m, IDENTITY_PROMPTS)
    patches = torch.cat([torch.zeros(1, m.d_model), torch.randn(6, m.d_model) * 0.3])
    layers = torch.tensor([-1, 0, 1, 1, 2, 3, 3])
    full = _patched_top(m, batch, patches, layers, top_k=8, set_k=40)
    cached = _patched_top_cached(m, batch, patches, layers, top_k=8, set_k=40)
    torch.testing.assert_close(cached.probs, full.probs, atol=1e-4, rtol=0)
    assert torch.equal(cached.ids[full.probs > 1e-4], full.ids[full.probs > 1e-4])


def test_patchscope_grid_and_llm_grader_hook(llama: LoadedModel) -> None:
    m = llama
    grid = torch.randn(m.n_layers, 3, m.d_model)
    seen: list[list[tuple[float, list[str]]]] = []

    def grader(scale_tokens: list[tuple[float, list[str]]]) -> tuple[float, list[str]]:
        seen.append(scale_tokens)
        return (1.0, ["cake"]) if len(seen) == 1 else (float("nan"), [])   # second cell: unusable answer
    result = patchscope_grid(m, grid, torch.ones(m.n_layers, 3), layers=[2], positions=[0, 2], grader=grader,
                             scales=[0.5, 1.0, 2.0])
    assert result.layers == [2, 2] and len(seen) == 2 and [s for s, _ in seen[0]] == [0.5, 1.0, 2.0]
    assert result.best_by_sign[1] == {"+": result.best_scale[1]}
    assert result.best_scale[0] == 1.0 and result.selected_tokens[0] == ["cake"]
    assert result.chosen_by[0] == "llm" and result.chosen_by[1] == "ungraded: the judge named no scale"
    assert result.selected_tokens[1] == []


def test_offline_criterion_prefers_stable_meaningful_tokens() -> None:
    from engine.readouts.patchscope import _stability

    # scale 0: identity echoes (masked out); scales 1-2: the same content tokens; scale 3: churn.
    ids = torch.tensor([[[1, 2, 3], [10, 11, 12], [10, 11, 13], [20, 21, 22]]])
    content = torch.tensor([[[False] * 3, [True] * 3, [True] * 3, [True, True, True]]])
    score, shared = _stability(ids, content)
    assert int(score[0].argmax()) == 1
    assert shared[0, 1].tolist() == [True, True, False]


def test_offline_criterion_scores_each_sign_apart() -> None:
    # -0.5 and +0.5 share token 7 but are opposite vectors: that must not make either stable.
    scales = [-1.0, -0.5, 0.5, 1.0]
    ids = torch.tensor([[[5, 6], [7, 8], [7, 9], [3, 4]]])
    content = torch.ones(1, 4, 2, dtype=torch.bool)
    score, _ = signed_stability(scales, ids, content)
    assert score[0].tolist() == [0.0, 0.0, 0.0, 0.0]
    ids = torch.tensor([[[5, 6], [5, 8], [7, 9], [3, 4]]])     # -1 and -0.5 share token 5
    score, shared = signed_stability(scales, ids, content)
    assert score[0, :2].tolist() == [0.5, 0.5] and score[0, 2:].tolist() == [0.0, 0.0]
    assert shared[0, 0].tolist() == [True, False]


def test_scale_grader_parses_reply() -> None:
    reply = "thinking...\nBEST_SCALE: 10\nSELECTED_TOKENS: ▁bake | cake | 'oven'\n"
    assert parse_scale_reply(reply) == (10.0, ["▁bake", "cake", "oven"])
    assert np.isnan(parse_scale_reply("no idea")[0])
    prompts: list[str] = []
    grade = llm_scale_grader(lambda p: prompts.append(p) or reply)
    assert grade([(1.0, [" the", " cake"]), (10.0, [" bake"])]) == (10.0, ["▁bake", "cake", "oven"])
    assert "SCALE 10: ' bake'" in prompts[0] and "' the'" not in prompts[0]


def test_trivial_tokens() -> None:
    assert all(is_trivial_token(t) for t in [" the", "\n\n", ",", "▁", " ->", "<eos>", "ing", "a"])
    assert not any(is_trivial_token(t) for t in [" cake", "▁oven", "Baking", "stock"])


def _fake_llm(relevant: set[str], veto: dict[int, str]) -> tuple[list[list[str]], object]:
    """Answers RELEVANT for tokens in `relevant`, except call `k` flips token `veto[k]`."""
    orders: list[list[str]] = []

    def complete(prompt: str) -> str:
        listed = re.findall(r"^(\d+)\. '(.*)'$", prompt, re.MULTILINE)
        tokens = [t for _, t in listed]
        orders.append(tokens)
        flip = veto.get(len(orders))
        return "reasoning\n" + "\n".join(
            f"ANSWER[{i + 1}]: {'RELEVANT' if (t in relevant) != (t == flip) else 'IRRELEVANT'}"
            for i, t in enumerate(tokens))
    return orders, complete


def test_llm_relevance_counts_a_token_only_if_all_shuffles_agree() -> None:
    tokens = [" cake", " oven", " stock", " flour", " river", " butter", " sugar", " money"]
    orders, complete = _fake_llm({" cake", " oven", " flour", " butter", " sugar"}, veto={2: " cake", 3: " money"})
    grader = llm_token_grader(complete, orders=3, seed=1)
    verdict = grader("baking cakes", tokens)
    assert len(orders) == 3 and orders[0] == tokens
    assert sorted(orders[1]) == sorted(tokens) and (orders[1] != tokens or orders[2] != tokens)
    # cake was vetoed once and money approved once: neither counts; the other answers map back by token.
    assert dict(zip(tokens, verdict, strict=True)) == {
        " cake": False, " oven": True, " stock": False, " flour": True, " river": False, " butter": True,
        " sugar": True, " money": False}


def test_relevance_filters_generic_and_frequent_tokens() -> None:
    sent: list[list[str]] = []

    def grader(description: str, tokens: list[str]) -> list[bool]:
        sent.append(tokens)
        return [True] * len(tokens)
    tokens = [" cake", " the", ",", " oven", " Paris", "\n"]
    rel = token_relevance(tokens, [0.3, 0.2, 0.2, 0.1, 0.1, 0.1], "baking", grader, frequent={"paris"})
    assert sent == [[" cake", " oven"]]
    assert rel.relevant == [True, False, False, True, False, False]
    assert rel.share == pytest.approx(2 / 6) and rel.weighted_share == pytest.approx(0.4)


def test_frequent_tokens_across_a_grid() -> None:
    toks = np.array([[[" the", " cake"], [" the", " x"]], [[" The", " y"], [" z", " w"]]], dtype=object)
    grid = TopTokens(torch.zeros(2, 2, 2, dtype=torch.long), torch.zeros(2, 2, 2), toks)
    assert frequent_tokens(grid, top_k=2, min_share=0.5) == {"the"}


def test_embedding_grader_offline() -> None:
    grade = embedding_token_grader()
    verdict = grade("Baking cakes and pastries: recipes, oven temperatures, butter and frosting.",
                    [" cake", "▁oven", " frosting", " river", " election", " guitar"])
    assert verdict == [True, True, True, False, False, False]
