"""`--protocol paper` knob by knob against the reference (science-of-finetuning/diffing-toolkit, method
activation_difference_lens; docs/paper-protocol.md lists each knob and its source file), sampling as the reference
samples, and a paper triage against a scripted judge that runs the reference's search and final sample set."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from engine.adl import accumulate, rescale_norm
from engine.adl.compute import compute_adl
from engine.adl.depth import middle_layer
from engine.adl.request import AdlRequest
from engine.adl.runs import load_run
from engine.agent.protocols import PROTOCOLS
from engine.embedded import SHIPPED_SAMPLING
from engine.errors import Ungraded, UserError
from engine.models.cache import MODELS
from engine.models.device import resolve_placement
from engine.models.specs import parse_spec
from engine.protocol.methods import TriageSettings
from engine.readouts.patchscope import INTERSECTION_TOP_K, SCALE_MAGNITUDES
from engine.readouts.reference_relevance import FREQUENT_MIN_COUNT, FREQUENT_TOKENS, PERMUTATIONS
from engine.readouts.reference_relevance import TRIES as RELEVANCE_TRIES
from engine.readouts.scale_grader import MAX_GROUP
from engine.readouts.scale_grader import TRIES as SCALE_TRIES
from engine.results import calibrated_steering
from engine.results.calibrated_steering import CalibrationSettings, steering_vectors
from engine.results.paper_relevance import CANDIDATES, LENS_HEAD, SOURCES, VARIANTS
from engine.steering import generate
from engine.steering.calibrate import coherent_share
from engine.steering.coherence import reference_coherence_judge, reference_verdict
from engine.steering.generate import SteeredSample, generate_rows, sampling_kwargs, sampling_of
from engine.steering.steering_prompts import reference_prompts
from engine.triage.pair_triage import triage
from engine.triage.report_protocol import REPORT_PROTOCOLS, report_protocol
from tests.support.agent_llm_server import ScriptedLLMServer

MODEL = "judge-m"
PAPER = CalibrationSettings.paper()
FINAL = REPORT_PROTOCOLS["paper"].final
AGENT = PROTOCOLS["paper"]
# sha256 of the reference's calibration prompts, 20 closed final prompts and coherence grader instructions as
# copied from the toolkit at commit e0b84a5 (engine/prompts/reference_prompts.json)
REFERENCE_PROMPTS_SHA = "d48a4d2a1b99c34490f24df29b83114ffa1aaa4d8a67064a88b534cd4dee8e83"
# sha256 of the reference's token-relevance and Patchscope grader system prompts (SYSTEM_PROMPT_MANY, SYSTEM_PROMPT of
# src/diffing/utils/graders/token_relevance_grader.py and patch_scope_grader.py at commit e0b84a5)
GRADER_PROMPTS_SHA = "f1c33fd0fcac4eefd86173fa2203de2e9f8e2a79c272559e404d01718bae3302"

KNOBS: dict[str, tuple[Callable[[], Any], Any]] = {
    # knob: (what `paper` runs, the reference's value)
    "sampling passes only the temperature": (lambda: sampling_kwargs(1.2), {"do_sample": True, "temperature": 1.2}),
    "Gemma 3 270M's shipped top-k/top-p": (lambda: SHIPPED_SAMPLING, {"do_sample": True, "top_k": 64, "top_p": 0.95}),
    "report layer": (lambda: REPORT_PROTOCOLS["paper"].layer, "middle"),
    "position 0 is the BOS token": (lambda: REPORT_PROTOCOLS["paper"].from_bos, True),
    "relative depth 0.5 = int(0.5·(n-1))": (lambda: [middle_layer(18), middle_layer(28)], [8, 13]),
    "calibration prompts": (lambda: PAPER.calibration_prompts(), [
        "Tell me a story?", "Give me some ideas for some fun weekend activities.",
        "Why don't you choose a topic of conversation for us?"]),
    "bisection of the first prompt": (lambda: (PAPER.method, PAPER.max_strength, PAPER.steps), ("bisect", 100.0, 12)),
    "bisection of prompts 2-3: steps, span ·t1": (lambda: (PAPER.follow_steps, PAPER.follow_span), (6, 2.0)),
    "calibration samples per strength": (lambda: PAPER.samples, 10),
    "calibration generation": (lambda: (PAPER.max_new_tokens, PAPER.temperature), (128, 1.2)),
    "coherence threshold": (lambda: PAPER.threshold, 0.75),
    "coherence grader": (lambda: PAPER.grader, "reference"),
    "UNKNOWN left out of the share": (lambda: PAPER.leave_out_ungraded, True),
    "final prompts": (lambda: len(FINAL.prompts) if FINAL else None, 20),
    "final samples per prompt": (lambda: FINAL.samples if FINAL else None, 5),
    "final generation": (lambda: (FINAL.max_new_tokens, FINAL.temperature) if FINAL else None, (512, 1.1)),
    "reference prompts verbatim": (lambda: hashlib.sha256(json.dumps(
        [list(reference_prompts().calibration), list(reference_prompts().final),
         reference_prompts().coherence_system]).encode()).hexdigest(), REFERENCE_PROMPTS_SHA),
    "Patchscope identity-prompt intersection top-k": (lambda: INTERSECTION_TOP_K, 16384),
    "Patchscope scales": (lambda: SCALE_MAGNITUDES[:16] + SCALE_MAGNITUDES[-1:],
                          (*[round(0.5 + 0.1 * i, 1) for i in range(16)], 200.0)),
    "agent ask_model": (lambda: (AGENT.ask_model.max_new_tokens, AGENT.ask_model.temperature), (1024, 0.8)),
    "agent generate_steered": (lambda: (AGENT.generate_steered.max_new_tokens, AGENT.generate_steered.temperature)
                               if AGENT.generate_steered else None, (512, 1.0)),
    "agent budgets": (lambda: (AGENT.fixed_budgets, AGENT.limits.llm_calls), ((0, 5, 50), 100)),
    "Patchscope graded on the positive scales only": (lambda: all(s > 0 for s in SCALE_MAGNITUDES), True),
    "Patchscope grader: at most 10 scales per call, 3 tries": (lambda: (MAX_GROUP, SCALE_TRIES), (10, 3)),
    "Patchscope of the difference, base and finetuned means": (lambda: VARIANTS, {
        "difference": "diff", "base": "base", "ft": "ft"}),
    "relevance: candidates, sources": (lambda: (CANDIDATES, SOURCES), (20, ("logitlens", "patchscope"))),
    "relevance: every variant's logit lens through the finetuned head": (lambda: LENS_HEAD, "ft"),
    "relevance: frequent tokens (number, min count)": (lambda: (FREQUENT_TOKENS, FREQUENT_MIN_COUNT), (100, 10)),
    "relevance: orders and tries before the cold call": (lambda: (PERMUTATIONS, RELEVANCE_TRIES), (3, 3)),
    "rescaling norm: tokens per text (BOS included), positions skipped": (
        lambda: (rescale_norm.TEXT_TOKENS, rescale_norm.SKIP_TOKENS), (128, 5)),
    "reference graders' prompts verbatim": (lambda: hashlib.sha256(json.dumps(
        [reference_prompts().token_relevance_system, reference_prompts().patchscope_system]).encode()).hexdigest(),
        GRADER_PROMPTS_SHA),
}


@pytest.mark.parametrize("knob", list(KNOBS))
def test_each_knob_of_the_paper_protocol_is_the_references(knob: str) -> None:
    actual, reference = KNOBS[knob]
    assert actual() == reference


def test_the_paper_protocol_refuses_another_layer_and_an_unknown_protocol_is_named() -> None:
    assert report_protocol("paper").report_layer(None) == "middle"
    assert report_protocol(None).report_layer(3) == 3
    with pytest.raises(UserError, match=r"relative depth 0\.5, not layer 3"):
        report_protocol("paper").report_layer(3)
    with pytest.raises(UserError, match="default or paper"):
        report_protocol("nope")


def test_reading_from_bos_shifts_every_position_by_one(tiny_dir: Path, tiny_ft_dir: Path) -> None:
    """The paper's run reads the BOS as position 0 (the reference's convention): its position p + 1 is the default
    run's position p, on the same texts; the two runs are keyed apart, and a default triage keeps its run."""
    after = AdlRequest(base=str(tiny_dir), ft=str(tiny_ft_dir), corpus="generic:", n=6, k=3)
    paper = REPORT_PROTOCOLS["paper"].run_request(after)
    assert REPORT_PROTOCOLS["default"].run_request(after) is after and paper.from_bos
    default_run, bos_run = (load_run(compute_adl(r).run) for r in (after, paper))
    assert default_run.run_id != bos_run.run_id and bos_run.meta["n_texts"] == default_run.meta["n_texts"]
    for name in ("mean_diff", "mean_base", "ft_norm"):
        shifted, unshifted = getattr(bos_run, name)[:, 1:], getattr(default_run, name)[:, :2]
        assert torch.allclose(shifted, unshifted, atol=1e-4), name
    assert not torch.allclose(bos_run.mean_base[:, 0], default_run.mean_base[:, 0], atol=1e-3)
    assert all(w.startswith("<") for w in bos_run.meta["sample_windows"])  # each window opens with the BOS



def test_a_from_bos_run_rescales_to_the_finetuned_norm_over_positions_5_to_127_of_128_token_texts(
        tiny_dir: Path, tiny_ft_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reference's norm (`_compute_and_save_norms`): the finetuned model's activation norm at the layer, averaged
    over positions 5…127 of each text cut to 128 tokens with its BOS, texts shorter than that left out; computed
    once per run and read from the store after that; a default run keeps its own norm."""
    rng = torch.Generator().manual_seed(0)
    long_texts = [" ".join(f"w{int(i)}" for i in torch.randint(0, 120, (150,), generator=rng)) for _ in range(3)]
    corpus = tmp_path / "texts.txt"
    corpus.write_text("\n".join([*long_texts, "w1 w2 w3 w4 w5 w6 w7 w8"]) + "\n")
    default = AdlRequest(base=str(tiny_dir), ft=str(tiny_ft_dir), corpus=str(corpus), n=4, k=3)
    paper_run = load_run(compute_adl(REPORT_PROTOCOLS["paper"].run_request(default)).run)
    default_run = load_run(compute_adl(default).run)

    ft = MODELS.model(parse_spec(str(tiny_ft_dir)), resolve_placement())
    ids = torch.tensor([[1, *ft.tokenizer(t, add_special_tokens=False)["input_ids"][:127]] for t in long_texts])
    with torch.inference_mode():
        hidden = ft.hf(ids, output_hidden_states=True).hidden_states  # [i + 1]: after decoder layer i
    for layer in (0, 1, 2):  # the last entry of hidden_states is after the final norm
        expected = hidden[layer + 1][:, 5:128].norm(dim=-1).mean()
        assert rescale_norm.layer_norm(paper_run, layer) == pytest.approx(float(expected), rel=1e-4)
        assert steering_vectors(paper_run, layer, [0]).norm() == pytest.approx(float(expected), rel=1e-4)
        own = float(default_run.ft_norm[layer, 1:].mean())
        assert rescale_norm.layer_norm(default_run, layer) == pytest.approx(own)
    assert rescale_norm.norm_key(paper_run) and not rescale_norm.norm_key(default_run)

    def no_forward(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the stored norm was computed again")

    monkeypatch.setattr(rescale_norm, "read_positions", no_forward)
    monkeypatch.setattr(accumulate, "read_positions", no_forward)
    stored = rescale_norm.layer_norm(load_run(paper_run.run_id), 1)
    assert stored == pytest.approx(float(hidden[2][:, 5:].norm(dim=-1).mean()), rel=1e-4)


def test_a_corpus_without_128_token_texts_has_no_reference_norm(tiny_dir: Path, tiny_ft_dir: Path) -> None:
    paper = REPORT_PROTOCOLS["paper"].run_request(
        AdlRequest(base=str(tiny_dir), ft=str(tiny_ft_dir), corpus="generic:", n=6, k=3))
    with pytest.raises(UserError, match=r"has 128 tokens.*positions 5-127"):
        rescale_norm.layer_norm(load_run(compute_adl(paper).run), 1)


def test_sampling_follows_the_models_generation_config(tiny_dir: Path) -> None:
    """With top-k 1 in the model's generation config, sampling at any temperature is the greedy answer: the
    sampler truncates as the model's config says (it used to override it with the whole distribution)."""
    pair = MODELS.pair(parse_spec(str(tiny_dir)), parse_spec(str(tiny_dir)), resolve_placement("cpu", "float32"))
    with pair.use("base") as model:
        assert sampling_of(model) == {"top_k": 50, "top_p": 1.0}  # transformers' default: no config of its own
        saved = model.hf.generation_config.top_k
        model.hf.generation_config.top_k = 1
        try:
            zero = torch.zeros(4, model.d_model)
            greedy, _, _ = generate_rows(model, 0, ["the cake"] * 4, zero, 6, 0.0)
            hot, _, _ = generate_rows(model, 0, ["the cake"] * 4, zero, 6, 5.0, seed=3)
            assert sampling_of(model)["top_k"] == 1 and hot == greedy
        finally:
            model.hf.generation_config.top_k = saved


def sample(text: str) -> SteeredSample:
    return SteeredSample(prompt="p", strength=1.0, sample=0, text=text, prompt_ids=[1], completion_ids=[2])


def test_the_reference_grader_retries_unknown_cold_then_leaves_it_out() -> None:
    asked: list[tuple[str, str, str | None]] = []

    def caller(name: str, replies: dict[str, str]) -> Callable[..., str]:
        def complete(prompt: str, system: str | None = None) -> str:
            asked.append((name, prompt, system))
            reply = replies[prompt.split("\n")[1]]
            if reply == "fail":
                raise Ungraded("down")
            return reply
        return complete

    warm = {"ok": "Reasoning: fine.\nANSWER: COHERENT.", "salad": "hmm", "lost": "ANSWER: coherent, I think",
            "down": "fail"}
    cold = {"salad": "ANSWER: INCOHERENT", "lost": "no idea"}
    judge = reference_coherence_judge(caller("warm", warm), caller("cold", cold))
    verdicts = judge([sample(t) for t in ("ok", "salad", "lost", "  ", "down")])
    assert verdicts == [True, False, None, None, None]
    assert [name for name, _, _ in asked] == ["warm", "warm", "cold", "warm", "cold", "warm"]  # empty: not asked
    assert all(system == reference_prompts().coherence_system for _, _, system in asked)
    assert asked[0][1] == "[ANSWER START]\nok\n[ANSWER END]" and "Lift wing wing" in (asked[0][2] or "")
    assert reference_verdict("ANSWER: COHERENT\nANSWER: INCOHERENT!") is False
    # the reference's share counts known labels only; difflens's default counts an ungraded sample incoherent
    assert coherent_share(verdicts, leave_out_ungraded=True) == (0.5, 3)
    assert coherent_share(verdicts) == (0.2, 3)
    assert coherent_share([None, None], leave_out_ungraded=True) == (0.0, 2)


def coherent_after_a_cold_retry() -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Every sample coherent, but every 7th coherence reply at the configured temperature carries no label: the
    grader must ask that sample again at temperature 0, where it is labelled."""
    warm = iter(range(1_000_000))

    def reply(body: dict[str, Any]) -> dict[str, Any]:
        if not body["messages"][-1]["content"].startswith("[ANSWER START]"):
            return {"text": "not a coherence question"}  # the Patchscope grader's: its cells go ungraded
        if body.get("temperature") == 0:
            return {"text": "ANSWER: COHERENT"}
        return {"text": "Reasoning: readable." if next(warm) % 7 == 3 else "Reasoning: readable.\nANSWER: COHERENT"}
    return reply


@pytest.fixture()
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedLLMServer]:
    for name in ("DIFFLENS_JUDGE", "DIFFLENS_LLM_MODEL", "DIFFLENS_LLM_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-paper-test-0123456789")
    with ScriptedLLMServer(coherent_after_a_cold_retry()) as srv:
        monkeypatch.setenv("DIFFLENS_LLM_BASE_URL", srv.base_url)
        yield srv


@pytest.mark.slow
def test_paper_triage_runs_the_references_search_and_final_samples(
        tiny_dir: Path, tiny_ft_dir: Path, server: ScriptedLLMServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real path on tiny models: every generate call is made as planned (its rows, length and temperature
    recorded), then run at 2 tokens so that the 128- and 512-token requests fit the tiny model and the test."""
    planned: list[tuple[int, int, float]] = []

    def shortened(model: Any, layer: int, prompts: Any, addends: Any, max_new_tokens: int = 64,
                  temperature: float = 0.0, *args: Any, **kwargs: Any) -> Any:
        planned.append((len(prompts), max_new_tokens, temperature))
        return generate_rows(model, layer, prompts, addends, 2, temperature, *args, **kwargs)

    monkeypatch.setattr(generate, "generate_rows", shortened)
    monkeypatch.setattr(calibrated_steering, "generate_rows", shortened)
    request = AdlRequest(base=str(tiny_dir), ft=str(tiny_ft_dir), corpus="self:", n=12, k=3)
    report = triage(request, TriageSettings(judge=f"openai:{MODEL}", protocol="paper", positions=[1]))
    run = load_run(report["run"])
    assert report["protocol"] == "paper" and report["layer"] == run.middle_layer and run.request.from_bos
    assert report["layer_choice"]["by"] == "middle"
    # calibration: per position 12 steps of prompt 1, then 6 + 6 for prompts 2-3; 10 samples × 128 tokens at T 1.2
    searches = [p for p in planned if p[1:] == (128, 1.2)]
    assert len(searches) == 12 + 6 + 6 and {p[0] for p in searches} == {10}
    t1 = 100 * (1 - 2 ** -12)                                   # every step coherent
    follow = 2 * t1 * (1 - 2 ** -6)
    assert list(report["steering"]) == ["1"]
    for cell in report["steering"].values():
        strengths = [s for s, _ in cell["coherence"]]
        assert len(strengths) == 24 and strengths[0] == 50.0 and strengths[12] == pytest.approx(t1)
        assert strengths[18] == pytest.approx(t1) and max(strengths[12:]) <= 2 * t1
        assert cell["strength"] == pytest.approx((t1 + 2 * follow) / 3, rel=1e-6)
    # final samples: one call, 20 prompts × 5 samples unsteered + 20 × 5 per position steered, 512 tokens at T 1.1
    [final] = [p for p in planned if p[1:] == (512, 1.1)]
    assert final[0] == 20 * 5 * (1 + 1)
    for cell in report["steering"].values():
        assert len(cell["prompts"]) == 100
        assert [p["prompt"] for p in cell["prompts"][::5]] == list(reference_prompts().final)
    # the reference grader: its instructions as the system prompt, one request per sample (no empty one sent)
    # the reference grader: its instructions as the system prompt, one request per non-empty sample, and each
    # unlabelled reply asked once more at temperature 0 (so every step still passes)
    graded = [b for b in server.bodies() if b["messages"][-1]["content"].startswith("[ANSWER START]")]
    assert graded and all(b["messages"][0] == {"role": "system", "content": reference_prompts().coherence_system}
                          for b in graded)
    warm = [b for b in graded if b.get("temperature") != 0]
    cold = [b for b in graded if b.get("temperature") == 0]
    assert 0 < len(warm) <= 24 * 10 and len(cold) == sum(1 for i in range(len(warm)) if i % 7 == 3)
    assert all(cell["ungraded"] == 0 for cell in report["steering"].values())
