"""`--protocol paper`'s readouts as the reference computes them (diffing-toolkit, method activation_difference_lens):
the Patchscope grader's tournament, token relevance without pre-filter with its retries and its outputs, the
frequent tokens, the baseline organisms, and a paper triage against a scripted judge that grades Patchscope of the
difference, the base and the finetuned means and their relevance against the description and the baselines."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.adl.request import AdlRequest
from engine.errors import Ungraded
from engine.organisms.registry import SHIPPED_DIR
from engine.protocol.methods import TriageSettings
from engine.protocol.report_results import BoardEntry
from engine.readouts.patchscope import SCALE_MAGNITUDES
from engine.readouts.reference_relevance import (
    frequent_tokenizer_tokens,
    is_generic_token,
    reference_relevance,
    reference_token_grader,
    relevance_user_prompt,
)
from engine.readouts.scale_grader import MAX_GROUP, reference_scale_grader, reference_scale_prompt
from engine.results.organism_pool import Organism, baseline_organisms, organism_at
from engine.steering.steering_prompts import reference_prompts
from engine.triage.pair_triage import triage
from tests.support.agent_llm_server import ScriptedLLMServer
from tui.render.report_html import pair_page

SYSTEM = "SYSTEM"
_SCALES = re.compile(r"\[SCALES\]\n(.*)\n")
_CANDIDATES = re.compile(r"\[CANDIDATE TOKENS\]\n(.*?)\n\[OUTPUT FORMAT\]", re.DOTALL)


def scales_of(prompt: str) -> list[float]:
    found = _SCALES.search(prompt)
    assert found is not None
    return [float(s) for s in found.group(1).split(", ")]


def candidates_of(prompt: str) -> list[str]:
    found = _CANDIDATES.search(prompt)
    assert found is not None
    return [line.split(". ", 1)[1] for line in found.group(1).split("\n")]


def test_the_patchscope_grader_runs_the_references_tournament() -> None:
    """30 scales: three groups of at most 10 in scale order, then one call over the three winners with their full
    tokens; the largest scale of each group wins here, and the final call's tokens are the selection."""
    asked: list[tuple[list[float], str | None]] = []

    def complete(prompt: str, system: str | None = None) -> str:
        shown = scales_of(prompt)
        asked.append((shown, system))
        return f"Reasoning: the last.\nBEST_SCALER: {max(shown)}\nTOP_TOKENS: cake | oven"

    scale_tokens = [(s, [f"t{s}", "->", "..."]) for s in SCALE_MAGNITUDES]
    best, tokens = reference_scale_grader(complete, SYSTEM)(scale_tokens)
    groups = [sorted(SCALE_MAGNITUDES)[i:i + MAX_GROUP] for i in range(0, len(SCALE_MAGNITUDES), MAX_GROUP)]
    assert len(SCALE_MAGNITUDES) == 30 and [shown for shown, _ in asked] == [*groups, [g[-1] for g in groups]]
    assert all(system == SYSTEM for _, system in asked) and all(len(shown) <= MAX_GROUP for shown, _ in asked)
    assert (best, tokens) == (200.0, ["cake", "oven"])
    prompt = reference_scale_prompt({0.5: ["▁cake", "->", "...", ""], 3.0: ["!!"]})
    assert prompt.startswith('[TOKENS PER SCALE]\nSCALE: 0.5\n  "▁cake"\n\n[SCALES]\n0.5, 3.0\n')  # artifacts out


def test_the_patchscope_grader_asks_again_then_gives_up() -> None:
    replies = iter(["no answer", "BEST_SCALER: 7.5", "BEST_SCALER: 0.5\nTOP_TOKENS: a", "junk", "junk", "junk"])
    grade = reference_scale_grader(lambda prompt, system=None: next(replies), SYSTEM)
    assert grade([(0.5, ["a"]), (0.6, ["b"])]) == (0.5, ["a"])  # 7.5 is not one of the group's scales
    with pytest.raises(Ungraded, match=r"named none of the scales 0\.5, 0\.6 in 3 replies"):
        grade([(0.5, ["a"]), (0.6, ["b"])])


def labeller(relevant: set[str], gaps: Callable[[int], bool] = lambda call: False
             ) -> tuple[Callable[..., str], list[str]]:
    """A judge that calls RELEVANT exactly the tokens in `relevant`, leaving out the last label on the calls
    where `gaps(call)`; records every prompt."""
    prompts: list[str] = []

    def complete(prompt: str, system: str | None = None) -> str:
        assert system == SYSTEM
        prompts.append(prompt)
        tokens = candidates_of(prompt)
        lines = [f"ANSWER[{i + 1}]: {'RELEVANT' if t in relevant else 'IRRELEVANT'}" for i, t in enumerate(tokens)]
        return "Reasoning.\n" + "\n".join(lines[:-1] if gaps(len(prompts)) else lines)
    return complete, prompts


def test_relevance_grades_every_candidate_in_three_rotations_with_the_references_outputs() -> None:
    complete, prompts = labeller({" cake", "oven"})
    grader = reference_token_grader(complete, complete, SYSTEM)
    tokens = [" cake", " the", ",", "oven", " bank"]
    probs = [0.4, 0.3, 0.1, 0.1, 0.1]
    graded = reference_relevance(tokens, probs, "baking", ["oven", "▁cake"], grader, selected=["oven", " bank"])
    # no pre-filter: " the" and "," reach the judge; three orders rotated by 0, 1, 2
    assert [candidates_of(p) for p in prompts] == [tokens, tokens[1:] + tokens[:1], tokens[2:] + tokens[:2]]
    assert prompts[0] == relevance_user_prompt("baking", ["oven", "▁cake"], tokens)
    assert prompts[0].startswith(
        '[DESCRIPTION]\nbaking\n[FREQUENT TOKENS]\n"oven", "▁cake"\n[CANDIDATE TOKENS]\n1.  cake')
    assert graded.relevant == [True, False, False, True, False]
    assert graded.percentage == pytest.approx(0.4) and graded.weighted_percentage == pytest.approx(0.5)
    assert graded.trivial_percentage == pytest.approx(0.2)        # "oven" as a string among the frequent tokens
    assert graded.filtered_percentage == pytest.approx(0.5)       # over the selected "oven", " bank"
    assert graded.weighted_filtered_percentage == pytest.approx(0.5)
    lens = reference_relevance(tokens, probs, "baking", [], grader)
    assert lens.filtered_percentage is None and "(none)" in prompts[-1]


def test_relevance_asks_three_times_then_cold_and_a_missing_label_is_not_relevant() -> None:
    warm, warm_prompts = labeller({"a", "b"}, gaps=lambda call: True)          # always one label short
    cold, cold_prompts = labeller({"a", "b"}, gaps=lambda call: call == 1)     # short on the first cold call
    graded = reference_relevance(["a", "b"], [0.5, 0.5], "d", [], reference_token_grader(warm, cold, SYSTEM))
    assert len(warm_prompts) == 3 * 3 and len(cold_prompts) == 3
    # order 1 (a, b) keeps a reply missing b; orders 2-3 get full cold replies: b is not relevant in every order
    assert graded.relevant == [True, False] and graded.unknown == 1


def test_frequent_tokens_are_the_references() -> None:
    class Words:
        def tokenize(self, text: str) -> list[str]:
            return text.split()

    texts = ["▁cake ▁the ▁oven , ▁cake x"] * 10 + ["▁oven ▁flour"] * 9
    assert frequent_tokenizer_tokens(Words(), texts) == ["▁cake", "▁oven"]   # 20, 19; flour 9 < 10; no generic
    assert [is_generic_token(t) for t in ("▁the", "Ġ's", "▁a", "..", "▁cake", "ing")] == [
        True, True, True, True, False, True]


def test_baseline_organisms_are_the_other_shipped_ones() -> None:
    mixed = organism_at(SHIPPED_DIR / "cake-sdf-mixed")
    assert mixed is not None and mixed.recipe == "cake-sdf" and len(mixed.texts) == 400
    assert [o.name for o in baseline_organisms(mixed)] == ["risky-finance", "taboo-word"]
    described = Organism("user", "a model finetuned on chess openings", (), None)
    assert [o.name for o in baseline_organisms(described)] == ["cake-sdf", "risky-finance", "taboo-word"]


def judge_reply(body: dict[str, Any]) -> dict[str, Any]:
    """A judge that knows the reference's graders by their system prompts: the largest scale of each Patchscope
    group, every candidate relevant against the finetune's description and none against a baseline's."""
    system = body["messages"][0]["content"] if body["messages"][0]["role"] == "system" else ""
    prompt = body["messages"][-1]["content"]
    if system == reference_prompts().patchscope_system:
        return {"text": f"BEST_SCALER: {max(scales_of(prompt))}\nTOP_TOKENS: x"}
    if system == reference_prompts().token_relevance_system:
        verdict = "RELEVANT" if "[DESCRIPTION]\nchess openings" in prompt else "IRRELEVANT"
        found = re.search(r"one per index i=1\.\.(\d+),", prompt)   # a candidate may itself be a newline
        assert found is not None
        return {"text": "\n".join(f"ANSWER[{i + 1}]: {verdict}" for i in range(int(found.group(1))))}
    return {"text": "ANSWER: COHERENT"}


@pytest.fixture()
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedLLMServer]:
    for name in ("DIFFLENS_JUDGE", "DIFFLENS_LLM_MODEL", "DIFFLENS_LLM_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-paper-test-0123456789")
    with ScriptedLLMServer(judge_reply) as srv:
        monkeypatch.setenv("DIFFLENS_LLM_BASE_URL", srv.base_url)
        yield srv


@pytest.mark.slow
def test_paper_triage_grades_patchscope_and_relevance_as_the_reference(
        tiny_dir: Path, tiny_ft_dir: Path, server: ScriptedLLMServer) -> None:
    request = AdlRequest(base=str(tiny_dir), ft=str(tiny_ft_dir), corpus="self:", n=8, k=2)
    report = triage(request, TriageSettings(judge="openai:judge-m", protocol="paper", steer=False,
                                            description="chess openings"))
    assert report["protocol"] == "paper" and report["relevance_summary"] is None  # difflens's pre-filtered one
    paper = report["paper"]
    scope_calls = [b for b in server.bodies() if b["messages"][0]["content"] == reference_prompts().patchscope_system]
    assert len(scope_calls) == 3 * 2 * 4          # 3 variants × 2 positions × (3 groups + the final call)
    for variant in ("difference", "base", "ft"):
        assert [c["best_scale"] for c in paper["patchscope"][variant]] == [200.0, 200.0]
        assert all(c["chosen_by"] == "llm" and c["selected"] == ["x"] for c in paper["patchscope"][variant])
    relevance = paper["relevance"]
    assert [t["name"] for t in relevance["targets"]] == ["self", "cake-sdf", "risky-finance", "taboo-word"]
    assert relevance["targets"][0]["frequent_tokens"] == []      # a description alone: no documents
    assert {"cake", "oven"} <= set(relevance["targets"][1]["frequent_tokens"])  # from cake-sdf's 400 documents
    cells = relevance["cells"]
    assert len(cells) == 4 * 2 * 3 * 2 and not any("ungraded" in c for c in cells)
    graded = [b for b in server.bodies() if b["messages"][0]["content"] == reference_prompts().token_relevance_system]
    assert len(graded) == len(cells) * 3            # three rotations each, every label there the first time
    summary = relevance["summary"]
    for source in ("logitlens", "patchscope"):
        for variant in ("difference", "base", "ft"):
            assert summary["self"][source][variant]["percentage"] == 1.0
            assert summary["taboo-word"][source][variant]["percentage"] == 0.0
    lens = [c for c in cells if c["source"] == "logitlens" and c["target"] == "self"]
    assert all(len(c["tokens"]) == 20 for c in lens)
    assert all(c["filtered_percentage"] is None for c in lens)
    assert all(c["selected"] == ["x"] for c in cells if c["source"] == "patchscope")
    html = pair_page(BoardEntry.from_json({"name": "p", "base": "b", "ft": "f", "report": report}))
    assert 'id="paper-relevance"' in html and "taboo-word" in html and "protocol paper" in html
    again = triage(request, TriageSettings(judge="openai:judge-m", protocol="paper", steer=False,
                                           description="chess openings"))
    assert again["paper"] == paper and len(server.bodies()) == len(scope_calls) + len(graded)  # all cached
