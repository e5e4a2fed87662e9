"""Significance against a null made the same way: delta profiles, random adapters that match them, the gate
that turns a report's headline into "no readable trace", and the null computed once."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from engine.adl.request import AdlRequest
from engine.models.null_adapters import DeltaProfile, full_profile, lora_profile, null_adapter
from engine.protocol.methods import TriageSettings
from engine.results import null_evidence as evidence_module
from engine.results import significance as sig_module
from engine.results.layer_choice import Criterion, LayerChoice
from engine.results.significance import NO_TRACE, NullTable, against, compare, headline, statement, with_evidence
from engine.triage.pair_triage import triage
from tests.support.board_pairs import plant_adapter
from tests.support.engine_helpers import write_corpus


@pytest.fixture(scope="module")
def random_lora(peaky_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return plant_adapter(peaky_base, tmp_path_factory.mktemp("sig") / "lora", 3, ["gate_proj", "down_proj"])


def choice(scores: dict[int, float], by: str = "criterion", layer: int = 2) -> LayerChoice:
    return LayerChoice(layer, by, 1, scores, {}, Criterion())  # type: ignore[arg-type]


def table(rows: list[list[float]]) -> NullTable:
    return NullTable(np.asarray(rows, np.float32), [0, 1, 2, 3], [], {}, 0.0)


NULL = table([[0.05, 0.10, 0.08, 0.02], [0.12, 0.04, 0.07, 0.03], [0.06, 0.09, 0.11, 0.05],
              [0.02, 0.08, 0.13, 0.04]])


def test_a_trace_far_above_every_null_is_readable() -> None:
    out = compare(choice({0: 0.1, 1: 0.2, 2: 0.48, 3: 0.1}), NULL)
    assert out["readable"] and out["observed"] == 0.48 and out["p"] == 0.2 and out["z"] > 3
    assert out["null_layer_scores"]["2"] == [0.08, 0.07, 0.11, 0.13]
    assert statement(out).startswith("readable trace: best-layer score 0.480")


def test_a_trace_inside_the_null_reads_no_readable_trace() -> None:
    out = compare(choice({0: 0.05, 1: 0.14, 2: 0.1, 3: 0.1}), NULL)
    assert not out["readable"] and out["p"] == 0.2 and out["z"] < 3  # above every null, but not by 3 sd
    text = statement(out)
    assert text.startswith(NO_TRACE) and "N = 4" in text and "0.140" in text
    inside = compare(choice({0: 0.1, 1: 0.11, 2: 0.1, 3: 0.1}), NULL)
    assert not inside["readable"] and inside["p"] == 0.8  # a tie counts against the finetune


def test_a_layer_the_user_named_is_tested_against_the_nulls_at_that_layer() -> None:
    out = compare(choice({0: 0.0, 1: 0.0, 2: 0.3, 3: 0.9}, by="user", layer=2), NULL)
    assert out["observed"] == 0.3 and out["statistic"] == "layer 2 score" and out["null_max"] == pytest.approx(0.13)


def test_the_headline_lists_tokens_only_for_a_readable_trace() -> None:
    hypothesis = {"summary": "keywords: cake, bake", "label": "keywords"}
    noise = {**compare(choice({0: 0.05, 1: 0.14, 2: 0.1, 3: 0.1}), NULL), "verdict": NO_TRACE}
    noise["statement"] = statement(noise)
    assert headline(noise, hypothesis).startswith(NO_TRACE) and "cake" not in headline(noise, hypothesis)
    found = compare(choice({0: 0.1, 1: 0.2, 2: 0.48, 3: 0.1}), NULL)
    found["statement"] = statement(found)
    assert headline(found, hypothesis) == "keywords: cake, bake"


def test_relevance_and_steering_gain_are_said_against_their_nulls_by_the_one_rule() -> None:
    found = {**compare(choice({0: 0.1, 1: 0.2, 2: 0.48, 3: 0.1}), NULL), "verdict": "readable trace"}
    relevance = {"tested": True, **against(0.05, np.asarray([0.04, 0.06, 0.05, 0.07]))}
    gain = {"tested": True, **against(0.3, np.asarray([0.01, 0.02, -0.01, 0.0]))}
    assert not relevance["clears"] and relevance["p"] == 0.8 and gain["clears"] and gain["z"] > 3
    out = with_evidence(found, relevance, gain)
    assert out["readable"] and out["relevance"] == relevance and out["steering_gain"] == gain
    assert out["statement"].startswith(statement(found)) and "relevance 0.050 vs null 0.055" in out["statement"]
    assert "relevance 0.050 vs null 0.055 ± 0.013 (max 0.070): within it" in out["statement"]
    assert "steering gain 0.300 vs null 0.005 ± 0.013 (max 0.020): clears it" in out["statement"]
    assert with_evidence(found, None, None) is found


def test_lora_profile_is_the_adapters_weight_delta_and_a_null_adapter_matches_it(random_lora: Path,
                                                                                 peaky_base: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    profile = lora_profile(random_lora)
    base = AutoModelForCausalLM.from_pretrained(peaky_base)
    before = {n: m.weight.detach().clone() for n, m in base.named_modules() if isinstance(m, torch.nn.Linear)}
    merged = PeftModel.from_pretrained(base, str(random_lora)).merge_and_unload()
    for name, (out, inp, norm) in profile.modules.items():
        delta = dict(merged.named_modules())[name].weight - before[name]
        assert (out, inp) == tuple(delta.shape) and norm == pytest.approx(float(delta.norm()), rel=1e-4)
    assert profile.rank == 2 and len(profile.modules) == 8  # gate and down projections of 4 layers
    again = lora_profile(null_adapter(profile, str(peaky_base), seed=0))
    shape = profile.null_shape()
    assert again.rank == profile.rank and set(again.modules) == set(shape.modules) == set(profile.modules)
    rms = profile.summary()["rms_norm"]
    for name, (_, _, norm) in again.modules.items():  # every module at the finetune's RMS norm, to an octave
        assert norm == pytest.approx(shape.modules[name][2], rel=1e-4)
        assert rms / 2 ** 0.5 <= norm <= rms * 2 ** 0.5
    assert null_adapter(profile, str(peaky_base), seed=0) == null_adapter(profile, str(peaky_base), seed=0)
    assert (null_adapter(profile, str(peaky_base), 1) / "adapter_model.safetensors").read_bytes() != \
        (null_adapter(profile, str(peaky_base), 0) / "adapter_model.safetensors").read_bytes()


def test_full_profile_reads_the_changed_matrices(llama: Any, tiny_ft_dir: Path) -> None:
    from engine.models.device import resolve_placement
    from engine.models.loading import load_model
    from engine.models.specs import parse_spec

    ft = load_model(parse_spec(str(tiny_ft_dir)), resolve_placement("cpu", "float32"))
    profile = full_profile(llama, ft)
    assert profile.modules and all(".mlp." in name for name in profile.modules)
    assert full_profile(llama, llama).empty
    assert DeltaProfile.from_json(profile.to_json()) == profile


def test_full_profile_is_the_same_on_a_base_copy_that_carries_injected_adapters(tiny_dir: Path,
                                                                              tiny_ft_dir: Path) -> None:
    """Null adapters are injected into the cached base model; a full finetune's profile read afterwards (another
    pair of a board, in the same process) must still see the model's own weights under their own names."""
    from dataclasses import replace as dc_replace

    from peft import LoraConfig, inject_adapter_in_model

    from engine.models.device import resolve_placement
    from engine.models.loading import load_model
    from engine.models.specs import parse_spec

    placement = resolve_placement("cpu", "float32")
    base = load_model(parse_spec(str(tiny_dir)), placement)
    ft = load_model(parse_spec(str(tiny_ft_dir)), placement)
    plain = full_profile(base, ft)
    wrapped = dc_replace(base, hf=inject_adapter_in_model(
        LoraConfig(r=2, target_modules=["gate_proj", "down_proj", "q_proj"]), base.hf))
    assert any(name.endswith(".base_layer") for name, _ in wrapped.hf.named_modules())
    assert plain.modules and full_profile(wrapped, ft) == plain


def test_a_random_adapter_reads_no_readable_trace_and_its_null_is_computed_once(
        peaky_base: Path, random_lora: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    request = AdlRequest(base=str(peaky_base), ft=str(peaky_base), adapter=str(random_lora), n=16, k=4)
    report = triage(request, TriageSettings(steer=False, null=4))
    sig = report["significance"]
    assert sig["readable"] is False and sig["n_null"] == 4 and report["headline"].startswith(NO_TRACE)
    assert set(sig["null_layer_scores"]) == {"0", "1", "2", "3"} and len(sig["null_runs"]) == 4

    def refuse(*_: Any, **__: Any) -> Any:
        raise AssertionError("the null should come from the store")

    monkeypatch.setattr(sig_module, "precompute_adapters", refuse)
    monkeypatch.setattr(sig_module, "compute_adl", refuse)
    again = triage(request, TriageSettings(steer=False, null=4))
    assert again["significance"] == sig


def test_two_finetunes_of_one_base_and_recipe_share_one_null_and_another_corpus_has_its_own(
        peaky_base: Path, random_lora: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another adapter of the same modules and rank (its own norms) reads the first one's null from the store;
    another base pass (here another corpus) builds a null of its own."""
    other = plant_adapter(peaky_base, tmp_path / "other", 11, ["gate_proj", "down_proj"])
    assert lora_profile(other).modules != lora_profile(random_lora).modules  # per-module norms differ ...
    assert lora_profile(other).null_shape() == lora_profile(random_lora).null_shape()  # ... the null shape does not
    first = AdlRequest(base=str(peaky_base), ft=str(peaky_base), adapter=str(random_lora), n=16, k=4)
    sig = triage(first, TriageSettings(steer=False, null=4))["significance"]
    built: list[int] = []
    real = sig_module.precompute_adapters

    def counting(requests: list[AdlRequest], *args: Any) -> Any:
        built.append(len(requests))
        return real(requests, *args)

    monkeypatch.setattr(sig_module, "precompute_adapters", counting)
    second = triage(replace(first, adapter=str(other)), TriageSettings(steer=False, null=4))["significance"]
    assert built == [] and second["null_runs"] == sig["null_runs"]
    assert second["null_layer_scores"] == sig["null_layer_scores"] and second["observed"] != sig["observed"]
    corpus = write_corpus(tmp_path / "corpus.txt")
    third = triage(replace(first, adapter=str(other), corpus=str(corpus)), TriageSettings(steer=False, null=4))
    assert built == [4] and set(third["significance"]["null_runs"]).isdisjoint(sig["null_runs"])


def test_a_known_finetunes_relevance_is_tested_against_the_null_adapters_by_the_same_judge(
        peaky_base: Path, random_lora: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    request = AdlRequest(base=str(peaky_base), ft=str(peaky_base), adapter=str(random_lora), n=16, k=4)
    options = TriageSettings(null=3, steer=False, description="baking cakes")
    report = triage(request, options)
    sig = report["significance"]
    assert sig["relevance"]["tested"] and sig["relevance"]["n_null"] == 3 and not sig["relevance"]["clears"]
    assert sig["relevance"]["observed"] == pytest.approx(np.mean(
        [report["layers"][str(report["layer"])][str(p)]["relevance"]["diff"] for p in range(4)]), abs=1e-4)
    assert "relevance" in sig["statement"] and "steering_gain" not in sig and report["headline"].startswith(NO_TRACE)

    def refuse(*_: Any, **__: Any) -> Any:
        raise AssertionError("the null's relevance should come from the store")

    monkeypatch.setattr(evidence_module, "token_grader", refuse)
    assert triage(request, options)["significance"]["relevance"] == sig["relevance"]


def test_the_steering_gain_null_steers_each_null_run_at_its_own_report_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    runs = NullTable(NULL.scores, NULL.layers, ["null-a", "null-b", "null-c", "null-d"], {}, 0.0)
    monkeypatch.setattr(evidence_module, "load_run", lambda run_id: run_id)
    asked: list[tuple[str, int]] = []

    def gain_of(run: Any, layer: int) -> float | None:
        asked.append((run, layer))
        return None if run == "null-d" else 0.01 * len(asked)  # a null with no coherent strength has no gain

    out = evidence_module.gain_null(runs, choice({0: 0.1, 1: 0.2, 2: 0.48, 3: 0.1}), gain_of, 0.2)
    assert asked == [("null-a", 1), ("null-b", 0), ("null-c", 2), ("null-d", 2)]  # each null's best layer
    assert out["tested"] and out["n_null"] == 3 and out["null_max"] == 0.03 and out["clears"]
    named = evidence_module.gain_null(runs, choice({2: 0.3}, by="user", layer=3), lambda run, layer: 0.0, 0.0)
    assert not named["clears"] and named["p"] == 1.0
    assert not evidence_module.gain_null(runs, choice({2: 0.3}), lambda run, layer: None, 0.1)["tested"]


def test_an_identical_pair_reads_no_readable_trace(peaky_base: Path) -> None:
    request = AdlRequest(base=str(peaky_base), ft=str(peaky_base), n=8, k=3)
    report = triage(request, TriageSettings(steer=False))
    assert report["significance"]["identical"] and report["headline"].startswith(NO_TRACE)
    assert "identical pair" in report["headline"]
