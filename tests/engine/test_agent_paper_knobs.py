"""The agent's two knobs taken from the reference (science-of-finetuning/diffing-toolkit at e0b84a5): the ten
grading rubrics, verbatim, and the `hypothesis_tracking` tool with its reminder. Each test fails if ours drifts."""

from __future__ import annotations

import hashlib
import json

import pytest

from engine.agent.budget import Budget
from engine.agent.grader import canonical_type, rubric_for
from engine.agent.hypotheses import HypothesisBoard
from engine.agent.loop import run_agent
from engine.agent.recorded import RecordedEnvironment
from engine.agent.tools import tools_for
from engine.agent.transcript import Transcript
from engine.errors import UserError
from engine.llm import LLMConfig, make_llm
from engine.organisms.registry import ORGANISM_TYPES, validate_registry
from tests.support.agent_fixtures import CAKE_ENV, KEY, PROMPT
from tests.support.agent_llm_server import ScriptedLLMServer

pytestmark = pytest.mark.usefixtures("llm_env")

# sha256 of each rubric text of configs/diffing/grading_rubrics.yaml at e0b84a5, in the reference's order
REFERENCE_RUBRICS = {
    "SDF": "e9d0282c2c66279216cb51f9986f0aed5e704b5f7c1fba3f04a0ff247d32cae8",
    "EM": "86167957576c0d9d25d5b9ce4aaf753e6f6b622e226c40cf2e85ea564e2a8bfe",
    "Taboo": "80dba33c9258cdcf62093f73b519e7b9d257f0e348672db72a5e0200786079bf",
    "Subliminal": "98b2bd831e66a78ee0e80aba79b72cc69d604f74df3dee4f2758f5c9d15cd121",
    "DomainAdaptation": "45720f0bd8c7e6d2411436bb0470b61b4eecbe68165fdfcde607c8573d7862f4",
    "R1_distillation": "2ebf650a5e28946f1ed3c261723f1129c225c2230df45a98503b44ecb71e97e6",
    "R1_uncensoring": "e870ae9104135c035cd05444c27eca70358d4a92e8875afaac0fb214a4c42bd6",
    "behavioral_anomaly": "1f9152f878a65ea88dc853a547b59ffc3b04f1cfce6ed9dc05485c6486a1beaf",
    "sandbaggers": "5d5d60e2bfbc6d2fd191deac121b3ea23e0565572f69ee710fb0a00c1ed887db",
    "benign_quirk": "9c49c0966eec3b4daf3de911e2acf769f39f14d8861b12bef9f39926bad3662a",
}


def test_the_ten_rubric_types_are_the_references_word_for_word() -> None:
    assert tuple(REFERENCE_RUBRICS) == ORGANISM_TYPES
    for kind, digest in REFERENCE_RUBRICS.items():
        assert hashlib.sha256(rubric_for(kind).encode()).hexdigest() == digest, kind
    assert validate_registry() == []


@pytest.mark.parametrize(("typed", "canonical"), [
    ("sdf", "SDF"), ("domain", "DomainAdaptation"), ("Behavioral-Anomaly", "behavioral_anomaly"),
    ("r1_distillation", "R1_distillation"), ("SANDBAGGERS", "sandbaggers")])
def test_types_are_read_in_any_case(typed: str, canonical: str) -> None:
    assert canonical_type(typed) == canonical and rubric_for(typed)


def test_an_unknown_type_names_the_flag_and_the_ten_types() -> None:
    with pytest.raises(UserError) as refused:
        rubric_for("quirky")
    assert "--type" in str(refused.value) and "benign_quirk" in str(refused.value)


def test_the_hypothesis_board_acts_as_the_references_tracker() -> None:
    board = HypothesisBoard()
    assert board.apply({"action": "add", "hypothesis": "cakes"}) == {
        "hypotheses": [{"id": 1, "hypothesis": "cakes", "status": "active", "reasoning": ""}]}
    board.apply({"action": "add", "hypotheses": ["ovens", "butter"]})
    board.apply({"action": "add", "hypothesis": ["vanilla"]})  # the reference's own prompt passes a list here
    after = board.apply({"action": "update", "id": 2, "status": "rejected", "reasoning": "no oven talk"})
    assert [(h["id"], h["status"], h["reasoning"]) for h in after["hypotheses"]] == [
        (1, "active", ""), (2, "rejected", "no oven talk"), (3, "active", ""), (4, "active", "")]
    assert board.apply({"action": "get"}) == after
    for bad in ({"action": "delete"}, {"action": "add"}, {"action": "add", "hypothesis": ""},
                {"action": "update", "id": 9, "status": "active"}, {"action": "update", "id": 1, "status": "done"},
                {"action": "update", "status": "active"}):
        with pytest.raises(ValueError):
            board.apply(bad)


def test_the_reminder_follows_ask_model_only_and_lists_the_active_hypotheses() -> None:
    board = HypothesisBoard()
    assert board.reminder("ask_model") == ""
    board.apply({"action": "add", "hypotheses": ["cakes", "ovens"]})
    board.apply({"action": "update", "id": 2, "status": "confirmed"})
    assert board.reminder("ask_model") == ("Active hypotheses:\n  [1] cakes\n"
                                           "Update hypothesis_tracking with your findings.")
    assert board.reminder("get_logitlens_details") == "" and board.reminder("hypothesis_tracking") == ""


@pytest.mark.parametrize("mode", ["adl", "baseline"])
def test_both_agents_track_hypotheses_and_are_reminded_in_the_loop(mode: str) -> None:
    assert "hypothesis_tracking" in tools_for(mode, HypothesisBoard())  # type: ignore[arg-type]
    script = [{"tool_calls": [("hypothesis_tracking", {"action": "add", "hypothesis": "cake baking"})]},
              {"tool_calls": [("ask_model", {"prompts": [PROMPT]})]},
              {"text": 'FINAL(description: "Cake baking at 450F with frozen butter.")'}]
    transcript = Transcript()
    with ScriptedLLMServer(script) as server:
        llm = make_llm(LLMConfig("openai", "scripted", base_url=server.base_url, api_key=KEY))
        result = run_agent(RecordedEnvironment(CAKE_ENV), llm, transcript, mode=mode,  # type: ignore[arg-type]
                           budget=Budget(model_interactions=5))
    board_answer, asked = (json.loads(m["content"]) for m in server.bodies()[2]["messages"] if m["role"] == "tool")
    assert "reminder" not in board_answer
    assert asked["reminder"] == "Active hypotheses:\n  [1] cake baking\nUpdate hypothesis_tracking with your findings."
    [event] = [e for e in transcript.events if e["type"] == "hypothesis"]
    assert (event["id"], event["hypothesis"], event["status"]) == (1, "cake baking", "active")
    assert result.hypotheses[0]["hypothesis"] == "cake baking" and result.tested
