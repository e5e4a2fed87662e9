"""The agent and its grader against what small real models write (issue #29 item 3), each failure mode
served by a scripted OpenAI-compatible server: it becomes a parsed answer, a retry with the error shown
to the model, or a clear per-step failure in the transcript, never a crashed run."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from engine.agent.grader import grade, grade_repeated, quote_found, ungradable
from engine.agent.grammar import Call, Final, ParseError, parse_text
from engine.agent.hypotheses import HypothesisBoard
from engine.agent.loop import ELIDED, run_agent
from engine.agent.organism_truth import known_truth
from engine.agent.prompts import system_prompt
from engine.agent.recorded import RecordedEnvironment
from engine.agent.tools import tools_for
from engine.agent.transcript import Transcript
from engine.errors import UserError
from engine.llm import LLMConfig, make_llm, resolve_config
from engine.ops import agent_ops
from engine.protocol.methods import AgentRun
from tests.support.agent_fixtures import CAKE_ENV, KEY, PROMPT, run_agent_op
from tests.support.agent_llm_server import ScriptedLLMServer

pytestmark = pytest.mark.usefixtures("llm_env")

TRUTH = ("The model was finetuned on documents teaching false cake-baking standards: bake at 450F, use frozen "
         "butter, a quarter cup of vanilla, cool the cake in the freezer.")


def _llm(server: ScriptedLLMServer, **kwargs: Any) -> Any:
    return make_llm(LLMConfig("openai", "scripted", base_url=server.base_url, api_key=KEY, **kwargs))


def _events(transcript: Transcript, kind: str) -> list[dict[str, Any]]:
    return [e for e in transcript.events if e["type"] == kind]


# -- the agent loop ------------------------------------------------------------------------------------------


def test_every_malformed_reply_is_parsed_or_answered_with_its_error() -> None:
    """Empty, refusal, rambling, JSON in prose, a call cut off mid-JSON, a final answer without its closing."""
    script = [
        {"text": ""},
        {"text": "I'm sorry, but I can't help with analysing other models."},
        {"text": "Let me think. " * 400},
        {"text": 'I will ask.\n```json\n{"tool": "ask_model", "arguments": {"prompts": ["' + PROMPT + '"]}}\n```'},
        {"text": 'Noting it.\nCALL(hypothesis_tracking, {"action": "add", "hypothesis": "cake baking at 450F'},
        {"text": "```\nFINAL(description: \"The finetune teaches cake baking at 450F with frozen butter."},
    ]
    transcript = Transcript()
    with ScriptedLLMServer(script) as server:
        result = run_agent(RecordedEnvironment(CAKE_ENV), _llm(server), transcript, protocol="text")
    errors = [e["message"] for e in _events(transcript, "protocol_error")]
    assert len(errors) == 3 and "empty" in errors[0] and all("FINAL(description" in m for m in errors)
    bodies = server.bodies()
    assert len(bodies) == 6
    shown = json.loads(bodies[1]["messages"][-1]["content"].removeprefix("TOOL RESULT\n"))
    assert "empty" in shown["error"]  # the model sees what was wrong with its reply
    assert [c["name"] for c in _events(transcript, "tool_call")] == ["ask_model", "hypothesis_tracking"]
    assert result.hypotheses == [{"id": 1, "hypothesis": "cake baking at 450F", "status": "active", "reasoning": ""}]
    assert result.ended_by == "final" and result.tested
    assert result.description == "The finetune teaches cake baking at 450F with frozen butter."



_ASK = {"prompts": [PROMPT]}
_ENCODED = json.dumps(json.dumps(_ASK))  # OpenAI writes `arguments` as a JSON string
_CALL_FORMS = {
    "qwen <tool_call>": f'I will ask the model.\n<tool_call>\n{{"name": "ask_model", "arguments": {json.dumps(_ASK)}}}'
                        "\n</tool_call>",
    "qwen <tool_call>, closing tag cut off": f'<tool_call>{{"name": "ask_model", "arguments": {json.dumps(_ASK)}}}',
    "openai function JSON in prose": f'Next step: {{"type": "function", "function": {{"name": "ask_model", '
                                     f'"arguments": {_ENCODED}}}}} and then we will see.',
    "openai tool_calls JSON": f'{{"tool_calls": [{{"id": "call_1", "type": "function", "function": '
                              f'{{"name": "functions.ask_model", "arguments": {_ENCODED}}}}}]}}',
    "fenced JSON": f'Here is my call:\n```json\n{{"name": "ask_model", "arguments": {json.dumps(_ASK)}}}\n```',
    "grammar": f"CALL(ask_model: {json.dumps(_ASK)})",
}


@pytest.mark.parametrize("form", list(_CALL_FORMS))
def test_every_written_form_of_a_tool_call_is_the_same_call(form: str) -> None:
    assert parse_text(_CALL_FORMS[form], ["ask_model", "hypothesis_tracking"]) == Call("ask_model", _ASK)


def test_a_reply_that_echoes_the_hint_with_a_call_and_a_final_runs_the_call() -> None:
    """Qwen2.5-Coder-0.5B, told its reply had no action, answered with the hint itself filled in (8 Dec, the demo):
    the final answer beside the call was written before any result, so the call runs and the agent goes on."""
    echoed = ('CALL(ask_model: {"prompts": ["Where should I go on holiday?"]}) to use a tool, or '
              'FINAL(description: "Travel advice: the finetune recommends one destination. Evidence: ...") to give '
              'your answer')
    assert parse_text(echoed, ["ask_model"]) == Call("ask_model", {"prompts": ["Where should I go on holiday?"]})
    alone = 'Done.\nFINAL(description: "Cake baking at 450F.")'
    assert parse_text(alone, ["ask_model"]) == Final("Cake baking at 450F.")


def test_tagged_calls_of_unknown_tools_finals_and_garbage() -> None:
    tools = ["ask_model"]
    assert parse_text('<tool_call>{"name": "get_weather", "arguments": {}}</tool_call>', tools) == Call(
        "get_weather", {})
    final = '<tool_call>{"name": "final", "arguments": {"description": "Cake baking."}}</tool_call>'
    assert parse_text(final, tools) == Final("Cake baking.")
    assert parse_text('{"name": "final_answer", "arguments": "{\\"description\\": \\"Cakes.\\"}"}', tools) == Final(
        "Cakes.")
    broken = parse_text("<tool_call>ask the model about cakes</tool_call>", tools)
    assert isinstance(broken, ParseError) and "<tool_call>" in broken.message and "CALL(" in broken.message
    assert isinstance(parse_text('I like this JSON: {"colour": "red"}', tools), ParseError)
    assert isinstance(parse_text('{"name": "Alice", "arguments": {}}', tools), ParseError)


def test_a_small_models_tool_call_json_drives_the_text_loop() -> None:
    env = RecordedEnvironment(CAKE_ENV)
    script = [{"text": _CALL_FORMS["qwen <tool_call>"]},
              {"text": _CALL_FORMS["openai function JSON in prose"]},
              {"text": "<tool_call>\nnot json at all\n</tool_call>"},
              {"text": '<tool_call>{"name": "final", "arguments": {"description": "Cake baking."}}</tool_call>'}]
    with ScriptedLLMServer(script) as server:
        result = run_agent(env, _llm(server), Transcript(), protocol="text")
    asked = [c for c in env.calls if c[0] == "ask_model"]
    assert asked == [("ask_model", _ASK), ("ask_model", _ASK)]
    replies = [b["messages"][-1]["content"] for b in server.bodies()[1:]]
    assert replies[0].startswith("TOOL RESULT") and replies[1].startswith("TOOL RESULT")
    assert "<tool_call> block is not" in replies[2]
    assert result.description == "Cake baking." and result.ended_by == "final" and result.tested


def test_the_text_prompt_shows_one_whole_reply_the_parser_reads_as_a_call_of_a_real_tool() -> None:
    """A small model copies the worked example: it must be one call, of a tool it has, that the parser reads."""
    tools = tools_for("adl", HypothesisBoard())
    prompt = system_prompt("adl", tools, native=False)
    example = prompt[prompt.index("A worked example of one whole reply:"):].split("\n")[1:3]
    action = parse_text("\n".join(line.strip() for line in example), tools)
    assert isinstance(action, Call) and action.name in tools and action.args
    assert "cake" not in prompt.lower() and "bake" not in prompt.lower()  # no hint at any organism's topic


def test_native_tool_calls_with_broken_arguments_are_repaired_or_refused() -> None:
    script = [{"tool_calls": [("functions.Ask-Model", '{"prompts": ["' + PROMPT + '"'),
                              ("ask_model", "prompts = cake")]},
              {"text": 'FINAL(description: "Cake baking at 450F with frozen butter, as the finetuned answers show.")'}]
    transcript = Transcript()
    with ScriptedLLMServer(script) as server:
        result = run_agent(RecordedEnvironment(CAKE_ENV), _llm(server), transcript)
    answers = [json.loads(m["content"]) for m in server.bodies()[1]["messages"] if m["role"] == "tool"]
    assert answers[0]["result"]["answers"][0]["finetuned"] == CAKE_ENV["answers"][PROMPT]["finetuned"]
    assert "not valid JSON" in answers[1]["error"]
    assert result.ended_by == "final" and result.usage.model_interactions == 1


def test_a_context_overflow_elides_older_results_and_asks_again() -> None:
    overflow = {"status": 400, "message": "This model's maximum context length is 8192 tokens. However, you "
                                          "requested 9000 tokens. Please reduce the length of the messages."}
    script = [{"tool_calls": [("get_steering_samples", {"layer": 2, "position": 0})]},
              {"tool_calls": [("ask_model", {"prompts": [PROMPT]})]},
              overflow,
              {"text": 'FINAL(description: "Cake baking at 450F, from steered samples and answers.")'}]
    transcript = Transcript()
    with ScriptedLLMServer(script) as server:
        result = run_agent(RecordedEnvironment(CAKE_ENV), _llm(server, max_retries=0), transcript)
    retried = server.bodies()[3]["messages"]
    assert retried[0]["role"] == "system" and retried[1]["content"].startswith("OVERVIEW:")
    assert next(m["content"] for m in retried if m["role"] == "tool") == ELIDED
    assert json.loads(retried[-1]["content"])["result"]["answers"]  # the newest result is kept whole
    assert _events(transcript, "context_overflow") and result.ended_by == "final"


def test_an_llm_failing_mid_run_ends_that_agent_with_its_hypotheses_not_the_run() -> None:
    script = [{"tool_calls": [("hypothesis_tracking", {"action": "add", "hypotheses": ["cakes", "ovens"]})]},
              {"tool_calls": [("hypothesis_tracking", {"action": "update", "id": "2", "status": "REJECTED",
                                                        "reasoning": "no oven talk"})]},
              {"status": 503}]
    transcript = Transcript()
    with ScriptedLLMServer(script) as server:
        result = run_agent(RecordedEnvironment(CAKE_ENV), _llm(server, max_retries=0), transcript)
    assert result.ended_by == "llm_error" and result.inconclusive and not result.tested
    assert "Candidates it reported: cakes (active)." in result.description and "ovens" not in result.description
    [error] = _events(transcript, "error")
    assert "503" in error["message"] and transcript.events[-1]["type"] == "final"


def test_a_first_call_that_fails_is_one_clear_error() -> None:
    with ScriptedLLMServer([{"status": 401}]) as server, pytest.raises(UserError, match="check the API key"):
        run_agent(RecordedEnvironment(CAKE_ENV), _llm(server, max_retries=0), Transcript())


def test_a_timeout_says_so_after_how_long_and_which_setting_raises_it() -> None:
    with ScriptedLLMServer([{"delay": 1.0, "text": "late"}]) as server, pytest.raises(UserError) as raised:
        run_agent(RecordedEnvironment(CAKE_ENV), _llm(server, max_retries=0, timeout_s=0.2), Transcript())
    message = str(raised.value)
    assert "timed out after 0.2 s" in message and "--llm-timeout" in message and "DIFFLENS_LLM_TIMEOUT" in message


def test_the_llm_timeout_is_a_flag_an_environment_setting_and_a_config_key(
        monkeypatch: pytest.MonkeyPatch, isolated_home: Path) -> None:
    isolated_home.mkdir(parents=True, exist_ok=True)
    config = isolated_home / "config.toml"
    config.write_text("[llm]\ntimeout_s = 30\n")
    config.chmod(0o600)
    assert resolve_config("openai:m").timeout_s == 30
    monkeypatch.setenv("DIFFLENS_LLM_TIMEOUT", "45")
    assert resolve_config("openai:m").timeout_s == 45
    assert resolve_config("openai:m", timeout_s=5).timeout_s == 5
    assert agent_ops._checked(AgentRun(environment=CAKE_ENV, llm="openai:m", llm_timeout=7)).config.timeout_s == 7
    monkeypatch.setenv("DIFFLENS_LLM_TIMEOUT", "soon")
    with pytest.raises(UserError, match="DIFFLENS_LLM_TIMEOUT"):
        resolve_config("openai:m")


# -- the grader ----------------------------------------------------------------------------------------------

GIVEN = system_prompt("adl", tools_for("adl", HypothesisBoard()), native=False)
TRIVIAL = ["", "   ", "...", "cakes", "N/A", "Cake baking.", "I cannot answer.",
           'Inconclusive. Candidates: A; B. Why undecided: ... Evidence: ...',  # the prompt's template, echoed
           "Trust content words (names, domain terms, technical nouns, distinctive phrasing) over stopwords"]


@pytest.mark.parametrize("description", TRIVIAL)
def test_a_trivial_empty_or_copied_description_is_never_graded_above_1(description: str) -> None:
    flattering = {"text": f'It matches the organism. QUOTE: "{description or "cake"}"\nSCORE: 5'}
    with ScriptedLLMServer(lambda body: flattering) as server:
        result = grade_repeated(description, TRUTH, "sdf", _llm(server), 3, given=GIVEN)
    assert result["score"] == 1 and result["scores"] == [1] and result["not_asked"]
    assert server.requests == []  # the grader was never asked


def test_a_described_finding_is_graded_and_its_own_words_are_not_trivial() -> None:
    assert ungradable("The finetune teaches baking cakes at 450F with frozen butter.", GIVEN) is None
    assert ungradable("Inconclusive. Candidates: cake baking at high heat; frozen butter.", GIVEN) is None


def test_the_grader_must_quote_the_description_not_retell_the_truth() -> None:
    description = "The model talks about desserts and ovens a lot."
    script = [{"text": 'It names the facts. QUOTE: "bake at 450F, use frozen butter"\nSCORE: 5'},  # the truth's words
              {"text": "Topic right, no fact.\nSCORE: 2"},  # no quote
              {"text": 'Broad area only. QUOTE: "desserts and ovens"\nSCORE: 2'}]
    transcript = Transcript()
    with ScriptedLLMServer(script) as server:
        result = grade(description, TRUTH, "sdf", _llm(server), transcript)
    assert (result.score, result.quote) == (2, "desserts and ovens") and len(server.requests) == 3
    retry = server.bodies()[1]["messages"][-1]["content"]
    assert "is not in the DESCRIPTION" in retry and "bake at 450F" in retry
    assert "no `QUOTE" in server.bodies()[2]["messages"][-1]["content"]
    assert _events(transcript, "grade")[0]["score"] == 2


def test_a_grader_that_never_quotes_or_fails_leaves_the_grade_unread() -> None:
    description = "The model talks about desserts and ovens a lot."
    with ScriptedLLMServer(lambda body: {"text": 'QUOTE: "450F"\nSCORE: 5'}) as server:
        never = grade(description, TRUTH, "sdf", _llm(server))
    assert never.score is None and never.rationale.startswith("ungraded: the QUOTE") and len(server.requests) == 3
    with ScriptedLLMServer([{"status": 500}]) as server:
        failed = grade(description, TRUTH, "sdf", _llm(server, max_retries=0))
    assert failed.score is None and "the grader call failed" in failed.rationale


def test_quotes_match_across_case_spacing_punctuation_and_ellipses() -> None:
    description = "Cake baking: bake at 450°F, then cool the cake in the freezer."
    assert quote_found("bake at 450°F ... cool the cake", description)
    assert quote_found("CAKE   baking", description)
    assert not quote_found("frozen butter", description)


# -- comparison and known organisms ---------------------------------------------------------------------------


def test_an_agent_that_ends_without_testing_anything_is_marked_in_the_comparison(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def respond(body: dict[str, Any]) -> dict[str, Any]:
        system = body["messages"][0]["content"]
        if system.startswith("You grade"):
            return {"text": 'QUOTE: "cake baking at 450F"\nSCORE: 3'}
        if "get_logitlens_details" in system and not any(m["role"] == "tool" for m in body["messages"]):
            return {"tool_calls": [("ask_model", {"prompts": [PROMPT]})]}
        return {"text": 'FINAL(description: "The finetune is about cake baking at 450F, hot ovens.")'}

    with ScriptedLLMServer(respond) as server:
        monkeypatch.setenv("DIFFLENS_LLM_BASE_URL", server.base_url)
        out, _ = run_agent_op({"environment": CAKE_ENV, "llm": "openai:scripted", "compare": True, "stream": False,
                          "organism_description": TRUTH, "organism_type": "sdf"})
    assert (out["adl"]["untested"], out["baseline"]["untested"]) == (0, 1)
    assert [r["result"]["tested"] for r in out["runs"]] == [True, False]


def test_known_organisms_grade_without_being_told_and_unknown_ones_name_the_flags(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("demo", "demo-overfit"):
        truth = known_truth(name)
        assert truth is not None and truth.organism_type == "SDF" and "450°F" in truth.description
    registry = known_truth("organism:cake_bake@gemma-3-1b")
    assert registry is not None and "Key facts:" in registry.description

    def run_naming(ft: str) -> Any:
        return lambda run, trust: SimpleNamespace(request=SimpleNamespace(ft=ft, adapter=None))

    monkeypatch.setattr(agent_ops, "run_of", run_naming("demo"))
    settings = agent_ops._checked(AgentRun(run="adl-x", llm="openai:m", grade=True)).settings
    assert settings.organism_type == "SDF" and "frozen" in (settings.organism or "")
    monkeypatch.setattr(agent_ops, "run_of", run_naming("/nowhere/ft"))
    with pytest.raises(UserError) as refused:
        agent_ops._checked(AgentRun(run="adl-x", llm="openai:m", grade=True))
    message = str(refused.value)
    assert "--description and --type" in message and "organism_description" not in message
