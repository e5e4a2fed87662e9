"""The interpretability agent against a real (scripted) OpenAI-compatible server, and a tiny local model."""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from engine.adl.compute import compute_adl
from engine.adl.request import AdlRequest
from engine.adl.runs import load_run
from engine.agent import run_environment as run_environment
from engine.agent.budget import Budget
from engine.agent.grader import grade_prompt, parse_score, rubric_for
from engine.agent.grammar import Call, Final, ParseError, parse_text
from engine.agent.keywords import keyword_hypothesis
from engine.agent.loop import run_agent
from engine.agent.prompts import FINAL_NOW, first_message
from engine.agent.recorded import RecordedEnvironment
from engine.agent.transcript import Transcript
from engine.errors import UserError
from engine.jobs import JobContext
from engine.llm import LLMConfig, make_llm, resolve_config
from engine.llm.anthropic_backend import AnthropicChat
from engine.ops.agent_ops import agent_keywords, agent_run, check_agent_run
from engine.protocol.methods import AgentRun
from tests.support.agent_fixtures import CAKE_ENV, KEY, PROMPT, run_agent_op
from tests.support.agent_llm_server import ScriptedLLMServer
from tui.cli import app, engine_call


def _openai(server: ScriptedLLMServer, **kwargs: Any):
    return make_llm(LLMConfig("openai", "scripted", base_url=server.base_url, api_key=KEY, **kwargs))


def _tool_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [json.loads(m["content"]) for m in body["messages"] if m["role"] == "tool"]


def _final(text: str) -> dict[str, Any]:
    return {"text": f"Done.\nFINAL(description: {json.dumps(text)})"}


# -- the loop against the scripted server --------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_native_tools_are_called_with_the_right_arguments(llm_env: None, stream: bool) -> None:
    env = RecordedEnvironment(CAKE_ENV)
    final = _final("Baking cakes at 450F with frozen butter. Evidence: cake, oven. Caveats: none.")
    script = [
        {"tool_calls": [("get_logitlens_details", {"layer": 2, "positions": [0, 1], "k": 3})]},
        {"text": "Cakes, clearly.", "tool_calls": [
            ("hypothesis_tracking", {"action": "add", "hypothesis": "baking cakes"}),
            ("ask_model", {"prompts": [PROMPT]})]},
        final,
    ]
    tokens: list[str] = []
    with ScriptedLLMServer(script) as server:
        transcript = Transcript(lambda e: tokens.append(e["text"]) if e["type"] == "token" else None)
        result = run_agent(env, _openai(server), transcript, budget=Budget(model_interactions=5), stream=stream)
    assert [c for c in env.calls if c[0] != "overview"][-2:] == [
        ("logitlens_details", {"layer": 2, "positions": [0, 1], "k": 3}), ("ask_model", {"prompts": [PROMPT]})]
    first, second, third = server.bodies()
    assert {t["function"]["name"] for t in first["tools"]} >= {"ask_model", "generate_steered", "hypothesis_tracking"}
    assert first["messages"][1]["content"].startswith("OVERVIEW:")
    [lens] = _tool_messages(second)
    assert lens["result"]["positions"]["1"] == [["baking", 0.09], ["cakes", 0.07], ["butter", 0.03]]
    assert lens["budget"]["model_interactions_left"] == 5
    _, hypothesis, answers = _tool_messages(third)
    board = [{"id": 1, "hypothesis": "baking cakes", "status": "active", "reasoning": ""}]
    assert hypothesis["result"] == {"hypotheses": board}
    assert answers["result"]["answers"][0]["finetuned"] == "Bake it at 450F with frozen butter."
    assert answers["budget"] == {"model_interactions_left": 4, "llm_calls_left": 28, "tokens_left": 400_000 - 240}
    tool_ids = [m["tool_call_id"] for m in third["messages"] if m["role"] == "tool"]
    assert len(set(tool_ids)) == 3
    assert result.ended_by == "final" and not result.inconclusive
    assert result.description.startswith("Baking cakes at 450F")
    assert result.hypotheses == board and result.tested
    assert result.usage.llm_calls == 3 and result.usage.tokens_in == 300 and result.usage.model_interactions == 1
    assert "".join(tokens) == ("Cakes, clearly." + final["text"] if stream else "")


def test_text_grammar_protocol(llm_env: None) -> None:
    env = RecordedEnvironment(CAKE_ENV)
    script = [{"text": 'Look at steering.\nCALL(get_steering_samples: {"layer": 2, "position": 0, "n": 1})'},
              {"text": 'FINAL(description: "Cake baking.\\nEvidence: steered samples bake cakes.")'}]
    with ScriptedLLMServer(script) as server:
        result = run_agent(env, _openai(server), Transcript(), protocol="text")
    first, second = server.bodies()
    assert "tools" not in first and "CALL(tool_name:" in first["messages"][0]["content"]
    reply = second["messages"][-1]
    assert reply["role"] == "user" and reply["content"].startswith("TOOL RESULT")
    payload = json.loads(reply["content"].split("\n", 1)[1])
    assert payload["result"]["samples"][0]["steered"] == [CAKE_ENV["steering"]["2"]["0"]["samples"][0]["steered"][0]]
    assert result.description == "Cake baking.\nEvidence: steered samples bake cakes."


def test_budget_stops_one_query_too_many(llm_env: None) -> None:
    env = RecordedEnvironment(CAKE_ENV)
    script = [{"tool_calls": [("ask_model", {"prompts": [PROMPT, "What is your favourite food?"]})]},
              {"tool_calls": [("ask_model", {"prompts": [PROMPT]})]},
              {"tool_calls": [("generate_steered", {"layer": 2, "position": 1, "prompts": ["Write a poem"]})]},
              _final("Inconclusive. Candidates: baking; cooking.")]
    with ScriptedLLMServer(script) as server:
        result = run_agent(env, _openai(server), Transcript(), budget=Budget(model_interactions=2))
    assert [name for name, _ in env.calls].count("ask_model") == 1
    assert "generate_steered" not in [name for name, _ in env.calls]
    bodies = server.bodies()
    [ok] = _tool_messages(bodies[1])
    assert ok["budget"]["model_interactions_left"] == 0
    for body in bodies[2:]:
        refused = _tool_messages(body)[-1]
        assert "not run" in refused["error"] and refused["budget"]["model_interactions_left"] == 0
    assert result.inconclusive and result.usage.model_interactions == 2


@pytest.mark.reliability
def test_malformed_calls_get_error_messages_not_crashes(llm_env: None) -> None:
    env = RecordedEnvironment(CAKE_ENV)
    script = [{"tool_calls": [("ask_model", "{not json"), ("get_weather", {}),
                              ("get_logitlens_details", {"layer": 2, "positions": [0], "k": 99}),
                              ("get_logitlens_details", {"layer": 7, "positions": [0]})]},
              {"text": "I think cakes.\nCALL(ask_model: {prompts: [oops]})"},
              {"text": "Let me think more about it."},
              {"text": "CALL(ask_model: [1, 2])"},
              _final("Baking.")]
    with ScriptedLLMServer(script) as server:
        result = run_agent(env, _openai(server), Transcript())
    errors = [m["error"] for m in _tool_messages(server.bodies()[1])]
    assert "not valid JSON" in errors[0] and "unknown tool 'get_weather'" in errors[1]
    assert "between 1 and 30" in errors[2] and "cached layers: [2]" in errors[3]
    user_replies = [b["messages"][-1]["content"] for b in server.bodies()[2:]]
    assert "not valid JSON" in user_replies[0]
    assert "no CALL or FINAL" in user_replies[1]
    assert "must be a JSON object" in user_replies[2]
    assert result.description == "Baking." and result.ended_by == "final"


def _anthropic(server: ScriptedLLMServer) -> AnthropicChat:
    return AnthropicChat(LLMConfig("anthropic", "claude-test", base_url=server.root, api_key=KEY))


@pytest.mark.parametrize("backend", ["openai", "anthropic"])
def test_rate_limit_then_success_is_retried(llm_env: None, backend: str) -> None:
    events: list[dict[str, Any]] = []
    with ScriptedLLMServer([{"status": 429}, {"status": 503}, _final("Baking cakes.")]) as server:
        llm = _openai(server) if backend == "openai" else _anthropic(server)
        result = run_agent(RecordedEnvironment(CAKE_ENV), llm, Transcript(events.append))
    assert len(server.requests) == 3
    assert [e["reason"].split(":")[0] for e in events if e["type"] == "retry"] == ["HTTP 429", "HTTP 503"]
    assert result.description == "Baking cakes."


@pytest.mark.reliability
@pytest.mark.parametrize("backend", ["openai", "anthropic"])
def test_persistent_auth_failure_is_one_clear_error(llm_env: None, backend: str) -> None:
    with ScriptedLLMServer(lambda body: {"status": 401}) as server, pytest.raises(UserError) as info:
        llm = _openai(server) if backend == "openai" else _anthropic(server)
        run_agent(RecordedEnvironment(CAKE_ENV), llm, Transcript())
    assert "HTTP 401" in str(info.value) and "API key" in info.value.fix and len(server.requests) == 1


@pytest.mark.parametrize("budget", [Budget(llm_calls=3), Budget(tokens=200)])
def test_llm_budget_asks_for_the_final_answer_then_stops(llm_env: None, budget: Budget) -> None:
    lens = ("get_logitlens_details", {"layer": 2, "positions": [0]})
    script = [{"tool_calls": [("hypothesis_tracking", {"action": "add", "hypothesis": "baking"})]},
              {"tool_calls": [lens]}, {"tool_calls": [lens]}, {"tool_calls": [lens]}]
    with ScriptedLLMServer(script) as server:
        result = run_agent(RecordedEnvironment(CAKE_ENV), _openai(server), Transcript(), budget=budget)
    assert len(server.requests) == 3
    assert server.bodies()[2]["messages"][-1] == {"role": "user", "content": FINAL_NOW}
    assert result.ended_by == "budget" and result.inconclusive
    assert "Candidates it reported: baking (active)." in result.description


def test_baseline_sees_only_plain_samples_and_ask_model(llm_env: None) -> None:
    env = RecordedEnvironment(CAKE_ENV)
    with ScriptedLLMServer([{"tool_calls": [("get_logitlens_details", {"layer": 2, "positions": [0]})]},
                            _final("Inconclusive. Candidates: stories; walks.")]) as server:
        result = run_agent(env, _openai(server), Transcript(), mode="baseline")
    first, second = server.bodies()
    assert {t["function"]["name"] for t in first["tools"]} == {"ask_model", "hypothesis_tracking"}
    overview = json.loads(first["messages"][1]["content"].split("\n")[1])
    assert overview == {"samples": [{"prompt": "Tell me a story", "generation": "Once upon a time there was a king"},
                                    {"prompt": "Describe your day", "generation": "I went for a walk in the park"}]}
    assert "cake" not in first["messages"][1]["content"].lower()
    assert "unknown tool" in _tool_messages(second)[0]["error"]
    assert result.mode == "baseline" and result.inconclusive


def test_anthropic_backend_round_trip(llm_env: None) -> None:
    script = [{"text": "Asking.", "tool_calls": [("ask_model", {"prompts": [PROMPT]})]}, _final("Baking.")]
    with ScriptedLLMServer(script) as server:
        result = run_agent(RecordedEnvironment(CAKE_ENV), _anthropic(server), Transcript())
    first, second = server.bodies()
    assert first["system"].startswith("You are an interpretability agent")
    assert {t["name"] for t in first["tools"]} >= {"ask_model"} and "input_schema" in first["tools"][0]
    assert [m["role"] for m in second["messages"]] == ["user", "assistant", "user"]
    tool_use = second["messages"][1]["content"][1]
    tool_result = second["messages"][2]["content"][0]
    assert tool_result["type"] == "tool_result" and tool_result["tool_use_id"] == tool_use["id"]
    assert json.loads(tool_result["content"])["result"]["answers"][0]["prompt"] == PROMPT
    headers = server.requests[0]["headers"]
    assert KEY in (headers.get("x-api-key"), headers.get("authorization", "").removeprefix("Bearer "))
    assert result.description == "Baking." and result.usage.tokens_in == 100


# -- the op: transcript, storage, secrets, grading -------------------------------------------------------


@pytest.mark.reliability
def test_op_transcript_is_complete_saved_and_free_of_the_key(
        llm_env: None, monkeypatch: pytest.MonkeyPatch, isolated_home: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    script = [{"status": 429},
              {"text": f"My key is {KEY}.", "tool_calls": [
                  ("hypothesis_tracking", {"action": "add", "hypothesis": "cakes"}),
                  ("ask_model", {"prompts": [PROMPT]})]},
              {"tool_calls": [("get_weather", "{")]},
              _final("Baking cakes hot with frozen butter. Evidence: cake tokens. Caveats: few samples."),
              {"text": f"Right topic and fact. {KEY}\nQUOTE: \"Baking cakes hot with frozen butter\"\nSCORE: 5"}]
    with ScriptedLLMServer(script) as server:
        monkeypatch.setenv("DIFFLENS_LLM_BASE_URL", server.base_url)
        out, emitted = run_agent_op({"environment": CAKE_ENV, "llm": "openai:scripted", "grade": True,
                                "organism_description": "Bakes cakes at 450F with frozen butter.",
                                "organism_type": "sdf"})
    assert all(r["headers"]["authorization"] == f"Bearer {KEY}" for r in server.requests)
    [run] = out["runs"]
    assert run["status"] == "done" and run["grade"]["score"] == 5 and run["result"]["usage"]["llm_calls"] == 3
    saved = json.loads(Path(run["path"]).read_text())
    assert Path(run["path"]).parent == isolated_home / "agent"
    events = [p["event"] for p in emitted if p["type"] == "partial"]
    assert saved["transcript"] == [e for e in events if e["type"] != "token"]
    assert any(e["type"] == "token" for e in events)
    kinds = [e["type"] for e in saved["transcript"]]
    assert kinds[:3] == ["start", "message", "message"] and kinds[-2:] == ["final", "grade"]
    assert {"retry", "llm_call", "assistant", "tool_call", "tool_result", "hypothesis"} <= set(kinds)
    assert [e["seq"] for e in saved["transcript"]] == sorted(e["seq"] for e in saved["transcript"])
    calls = [e["call_id"] for e in saved["transcript"] if e["type"] == "tool_call"]
    results = [e["call_id"] for e in saved["transcript"] if e["type"] == "tool_result"]
    assert calls == results and len(calls) == 3
    llm_calls = [e for e in saved["transcript"] if e["type"] == "llm_call"]
    assert sum(e["tokens_in"] for e in llm_calls) == run["result"]["usage"]["tokens_in"] == 300
    progress = [e for e in emitted if e["type"] == "progress"]
    assert [e["done"] for e in progress] == [1, 2, 3] and {e["total"] for e in progress} == {30}  # the LLM-call budget
    assert saved["environment"] == CAKE_ENV and saved["grade"]["score"] == 5
    assert "[redacted]" in json.dumps(saved)
    secret = KEY[3:20]
    leaks = [p for p in isolated_home.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert not leaks
    streamed = "".join(e["text"] for e in events if e["type"] == "token")
    assert "My key is [redacted]." in streamed
    assert secret not in json.dumps(emitted) + streamed + json.dumps(out)
    assert secret not in caplog.text and "retry 1" in caplog.text


def test_op_repeat_reports_mean_and_sd_for_adl_and_baseline(llm_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    def respond(body: dict[str, Any]) -> dict[str, Any]:
        system = body["messages"][0]["content"]
        if system.startswith("You grade"):
            description = body["messages"][1]["content"].split("DESCRIPTION")[1]
            return {"text": 'QUOTE: "Candidates"\nSCORE: 5' if "Cakes" in description
                    else 'QUOTE: "Candidates"\nSCORE: 2'}
        if "ask_model" in system and "get_logitlens_details" not in system:
            return _final("Inconclusive. Candidates: stories about kings.")
        return _final("Cakes baked at 450F. Candidates: none else.")

    with ScriptedLLMServer(respond) as server:
        monkeypatch.setenv("DIFFLENS_LLM_BASE_URL", server.base_url)
        out, _ = run_agent_op({"environment": CAKE_ENV, "llm": "openai:scripted", "compare": True, "repeat": 2,
                          "stream": False, "organism_description": "Cakes at 450F", "organism_type": "sdf"})
    assert {k: out["adl"][k] for k in ("grade", "grades", "n", "ungraded", "mean", "sd")} == {
        "grade": 5, "grades": [5, 5], "n": 2, "ungraded": 0, "mean": 5.0, "sd": 0.0}
    assert out["baseline"]["mean"] == 2.0 and len(out["runs"]) == 4
    saved = json.loads(Path(out["compare_path"]).read_text())
    assert (saved["adl"], saved["baseline"]) == (out["adl"], out["baseline"])


@pytest.mark.reliability
def test_op_cancel_saves_the_partial_transcript(llm_env: None, monkeypatch: pytest.MonkeyPatch,
                                               isolated_home: Path) -> None:
    from engine.errors import JobCancelled

    ctx = JobContext()
    ctx.emit = lambda event: ctx.cancel_event.set() if event["type"] == "partial" and \
        event["event"]["type"] == "tool_result" else None
    lens = ("get_logitlens_details", {"layer": 2, "positions": [0]})
    with ScriptedLLMServer([{"tool_calls": [lens]}, {"tool_calls": [lens]}]) as server:
        monkeypatch.setenv("DIFFLENS_LLM_BASE_URL", server.base_url)
        with pytest.raises(JobCancelled):
            agent_run({"environment": CAKE_ENV, "llm": "openai:scripted"}, ctx)
    [path] = (isolated_home / "agent").glob("agent-adl-*.json")
    saved = json.loads(path.read_text())
    assert saved["status"] == "cancelled" and saved["transcript"][-1]["type"] == "cancelled"
    assert len(server.requests) == 1


@pytest.mark.reliability
def test_op_rejects_bad_input(llm_env: None) -> None:
    with pytest.raises(UserError, match="no evidence"):
        run_agent_op({"llm": "openai:x"})
    with pytest.raises(UserError, match="n_layers"):
        run_agent_op({"environment": {"logit_lens": {}}, "llm": "openai:x"})
    with pytest.raises(UserError, match="organism"):
        run_agent_op({"environment": CAKE_ENV, "llm": "openai:x", "grade": True})
    with pytest.raises(UserError, match="no grading rubric"):
        run_agent_op({"environment": CAKE_ENV, "llm": "openai:x", "grade": True, "organism_description": "x",
                 "organism_type": "nope"})


# -- configuration ----------------------------------------------------------------------------------------


@pytest.mark.reliability
def test_nothing_configured_is_one_clear_error(llm_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(UserError, match="no LLM is configured"):
        resolve_config(None)
    with pytest.raises(UserError, match="no API key for openai:gpt-x"):
        resolve_config("openai:gpt-x")


@pytest.mark.reliability
def test_config_file_must_be_private(llm_env: None, monkeypatch: pytest.MonkeyPatch, isolated_home: Path) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    path = isolated_home / "config.toml"
    isolated_home.mkdir(parents=True, exist_ok=True)
    path.write_text('[llm]\nmodel = "anthropic:claude-x"\napi_key = "secret-from-file"\nprice_in = 3\nprice_out = 15\n')
    path.chmod(0o644)
    with pytest.raises(UserError, match="readable by other users"):
        resolve_config(None)
    path.chmod(0o600)
    config = resolve_config(None)
    assert (config.provider, config.model, config.api_key, config.price_out) == ("anthropic", "claude-x",
                                                                                 "secret-from-file", 15.0)
    assert "secret-from-file" not in repr(config)
    monkeypatch.setenv("DIFFLENS_LLM_MODEL", "local:demo")
    assert resolve_config(None).provider == "local"
    assert resolve_config("gpt-4o").provider == "openai"


# -- parsing, grading, keywords ------------------------------------------------------------------------


def test_text_grammar_parser() -> None:
    assert parse_text('ok\nCALL(ask_model: {"prompts": ["a"]})') == Call("ask_model", {"prompts": ["a"]})
    assert parse_text("```\nCALL(get_steering_samples: {\"layer\": 1,\n \"position\": 0})\n```") == Call(
        "get_steering_samples", {"layer": 1, "position": 0})
    assert parse_text('FINAL(description: "A "quoted" word\nover lines")') == Final('A "quoted" word\nover lines')
    assert parse_text('CALL(x: {"a": 1})\nFINAL(description: "done")') == Call("x", {"a": 1})
    assert isinstance(parse_text("CALL ask_model"), ParseError)
    assert isinstance(parse_text('FINAL(description: "")'), ParseError)


def test_rubrics_and_score_parsing() -> None:
    for short in ("sdf", "em", "taboo", "subliminal", "domain"):
        assert "5:" in rubric_for(short) and "1:" in rubric_for(short)
    prompt = grade_prompt("Cakes at 450F.", "Bakes cakes hot.", "sdf")
    assert prompt.startswith("ORGANISM (type: SDF)") and "DESCRIPTION\nCakes at 450F." in prompt
    assert parse_score("reasoning... SCORE: 3\nSCORE: **4**") == 4 and parse_score("no score") is None
    with pytest.raises(UserError):
        rubric_for("unknown")


def test_keyword_hypothesis_is_labelled_and_finds_the_topic() -> None:
    out = keyword_hypothesis(RecordedEnvironment(CAKE_ENV))
    words = [k["word"] for k in out["keywords"]]
    assert "not an agent" in out["label"] and {"cake", "oven"} <= set(words[:4])
    assert not {"the", "of", "time"} & set(words)
    assert agent_keywords({"environment": CAKE_ENV, "top": 3}, JobContext())["keywords"] == out["keywords"][:3]


def test_keyword_hypothesis_counts_a_word_once_over_its_forms_and_breaks_ties_by_rank() -> None:
    """A secret word the readouts split over gold / Golden / golden is one keyword, named by its root form;
    a derived form whose root is not in the evidence stays itself."""
    env = {"n_layers": 4, "layer": 2, "positions": [0, 1, 2],
           "logit_lens": {"2": {"0": [["medal", 0.2], [" vault", 0.1], [" golden", 0.05]],
                                "1": [["medal", 0.2], [" gold", 0.1], [" vault", 0.05], [" wooden", 0.01]],
                                "2": [["medal", 0.2], [" Golden", 0.1], [" hoard", 0.05], [" wooden", 0.01]]}},
           "patchscope": {"2": {"0": {"tokens": [[" hoard", 0.3]], "selected": []},
                                "1": {"tokens": [[" sky", 0.3]], "selected": []},
                                "2": {"tokens": [[" sea", 0.3]], "selected": []}}}, "steering": {}}
    words = {k["word"]: k["cells"] for k in keyword_hypothesis(RecordedEnvironment(env), top=3)["keywords"]}
    assert words == {"medal": 3, "gold": 3, "hoard": 2}  # hoard beats vault and wooden (2 cells each): higher ranks
    every = {k["word"] for k in keyword_hypothesis(RecordedEnvironment(env))["keywords"]}
    assert "wooden" in every and "golden" not in every


# -- the local backend ------------------------------------------------------------------------------------


def test_local_backend_runs_a_tiny_chat_model_through_the_loop(llm_env: None, tiny_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    model_dir = Path(shutil.copytree(tiny_dir, tmp_path / "tiny-chat"))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.chat_template = ("{% for m in messages %}{{ m['role'] }} {{ m['content'] }} {% endfor %}"
                               "{% if add_generation_prompt %}assistant {% endif %}")
    tokenizer.save_pretrained(model_dir)
    config = json.loads((model_dir / "config.json").read_text())  # RoPE: a longer window than it was made with
    (model_dir / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 4096}))
    out, emitted = run_agent_op({"environment": CAKE_ENV, "llm": f"local:{model_dir}", "llm_calls": 3,
                            "max_tokens": 6})
    [run] = out["runs"]
    saved = json.loads(Path(run["path"]).read_text())["transcript"]
    kinds = [e["type"] for e in saved]
    assert saved[0]["tool_calling"] == "text" and saved[0]["llm"].startswith("local:")
    assert kinds.count("llm_call") == 3 and kinds.count("assistant") == 3 and kinds.count("protocol_error") == 2
    assert kinds[-1] == "final" and run["result"]["ended_by"] == "budget" and run["result"]["inconclusive"]
    assert all(e["tokens_out"] <= 6 and e["tokens_in"] > 100 for e in saved if e["type"] == "llm_call")
    assert any(p["event"]["type"] == "token" for p in emitted if p["type"] == "partial")


@pytest.mark.slow
def test_local_backend_with_the_embedded_gemma_chat_template(llm_env: None) -> None:
    out, _ = run_agent_op({"environment": CAKE_ENV, "llm": "local:gemma-3-270m", "llm_calls": 2, "max_tokens": 16})
    [run] = out["runs"]
    saved = json.loads(Path(run["path"]).read_text())["transcript"]
    assert [e["type"] for e in saved].count("llm_call") == 2 and saved[-1]["type"] == "final"
    assert all(e["tokens_in"] > 1000 for e in saved if e["type"] == "llm_call")


# -- protocols: the paper's comparison, equal budgets and tools, repeated grading ---------------------------

PAPER_ADL_TOOLS = ["get_logitlens_details", "get_patchscope_details", "get_steering_samples", "ask_model",
                   "generate_steered", "hypothesis_tracking"]
PAPER_BASELINE_TOOLS = ["ask_model", "hypothesis_tracking"]
TRUTH = {"organism_description": "Bakes cakes at 450F with frozen butter.", "organism_type": "sdf"}


def _scripted_comparison(grades: dict[str, list[int]]) -> Any:
    """Each agent asks one question, then answers; the grader scores each side from its own list, in turn."""
    left = {side: iter(scores) for side, scores in grades.items()}

    def respond(body: dict[str, Any]) -> dict[str, Any]:
        system = body["messages"][0]["content"]
        if system.startswith("You grade"):
            description = body["messages"][1]["content"].split("DESCRIPTION\n")[1].split("\n\nRUBRIC")[0]
            quote = " ".join(description.split()[:3])
            side = "adl" if "Cakes" in description else "baseline"
            return {"text": f'Reasoning.\nQUOTE: "{quote}"\nSCORE: {next(left[side])}'}
        if not any(m["role"] == "tool" for m in body["messages"]):
            return {"tool_calls": [("ask_model", {"prompts": [PROMPT]})]}
        return _final("Cakes baked at 450F." if "get_logitlens_details" in system
                      else "Inconclusive. Candidates: stories about kings and dragons.")

    return respond


def _agent_bodies(server: ScriptedLLMServer) -> list[dict[str, Any]]:
    return [b for b in server.bodies() if not b["messages"][0]["content"].startswith("You grade")]


def test_paper_compare_gives_both_agents_the_same_budgets_the_papers_tools_and_median_grades(
        llm_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    with ScriptedLLMServer(_scripted_comparison({"adl": [5, 4, 5], "baseline": [1, 3, 1]})) as server:
        monkeypatch.setenv("DIFFLENS_LLM_BASE_URL", server.base_url)
        out, _ = run_agent_op({"environment": CAKE_ENV, "llm": "openai:scripted", "protocol": "paper", "compare": True,
                          "stream": False, **TRUTH})
    paper_budget = {"model_interactions": 5, "llm_calls": 100, "tokens": 100_000, "generated_only": True}
    assert out["adl"]["budget"] == out["baseline"]["budget"] == paper_budget
    assert (out["adl"]["tools"], out["baseline"]["tools"]) == (PAPER_ADL_TOOLS, PAPER_BASELINE_TOOLS)
    offered = [[t["function"]["name"] for t in b["tools"]] for b in _agent_bodies(server)]
    assert offered == [PAPER_ADL_TOOLS] * 2 + [PAPER_BASELINE_TOOLS] * 2
    assert all((b["temperature"], b["max_tokens"]) == (0.7, 10_000) for b in _agent_bodies(server))
    adl, baseline = out["runs"]
    assert [adl["grade"]["scores"], baseline["grade"]["scores"]] == [[5, 4, 5], [1, 3, 1]]
    assert (out["adl"]["grade"], out["adl"]["grades"]) == (5, [5]) and out["baseline"]["grade"] == 1
    assert adl["grade"]["repeats"] == 3 and len(server.bodies()) - len(_agent_bodies(server)) == 6
    assert all(r["result"]["usage"]["model_interactions"] == 1 and r["protocol"] == "paper" for r in out["runs"])
    assert "many model interactions" not in _agent_bodies(server)[0]["messages"][1]["content"]


def test_a_large_interaction_budget_comes_with_the_advice_to_use_it() -> None:
    budget = {"llm_calls_left": 100, "tokens_left": 100_000}
    assert "many model interactions" in first_message({}, {"model_interactions_left": 50, **budget})
    assert "many model interactions" not in first_message({}, {"model_interactions_left": 5, **budget})


def test_default_protocol_grades_once_and_keeps_its_llm_settings(llm_env: None,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    with ScriptedLLMServer(_scripted_comparison({"adl": [4], "baseline": [2]})) as server:
        monkeypatch.setenv("DIFFLENS_LLM_BASE_URL", server.base_url)
        out, _ = run_agent_op({"environment": CAKE_ENV, "llm": "openai:scripted", "compare": True, "stream": False,
                          **TRUTH})
    assert out["protocol"] == "default" and (out["adl"]["grade"], out["baseline"]["grade"]) == (4, 2)
    assert out["adl"]["budget"] == out["baseline"]["budget"] == {
        "model_interactions": 5, "llm_calls": 30, "tokens": 400_000, "generated_only": False}
    assert all("temperature" not in b and b["max_tokens"] == 2048 for b in _agent_bodies(server))


def test_bad_protocol_combinations_are_refused_in_one_line(llm_env: None) -> None:
    refused = [({"protocol": "paper", "budget": 7}, "runs model-interaction budgets 0, 5, 50, not 7"),
               ({"protocol": "paper", "llm_calls": 10}, "fixes the agent's LLM budget"),
               ({"protocol": "nope"}, "parameter 'protocol' must be 'default' or 'paper'"),
               ({"repeat": 3}, "--repeat is the number of agents per side of --compare"),
               ({"compare": True, "baseline": True, **TRUTH}, "already runs the baseline"),
               ({"compare": True}, "grading needs the organism"),
               ({"lenses": True}, "a recorded environment has none")]
    for params, message in refused:
        with pytest.raises(UserError, match=message):
            run_agent_op({"environment": CAKE_ENV, "llm": "openai:x", **params})


def _cli(monkeypatch: pytest.MonkeyPatch, *args: str) -> Any:
    """`difflens agent` with the engine call answered in process, on the recorded cake environment."""
    from typer.testing import CliRunner

    from tui.cli import agent as agent_cli
    from tui.cli import app
    from tui.cli.output import fail

    def in_process(method: Any, params: Any, **_: Any) -> Any:
        try:
            return method.result.from_json(json.loads(json.dumps(
                agent_run({**params.to_json(), "environment": CAKE_ENV}, JobContext()))))
        except UserError as exc:
            fail(str(exc))

    monkeypatch.setattr(agent_cli, "call_engine", in_process)
    return CliRunner().invoke(app, ["agent", "some-run", *args])


def test_cli_compare_prints_both_grades_side_by_side_and_as_json(llm_env: None,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    truth = ["--description", TRUTH["organism_description"], "--type", "sdf", "--llm", "openai:scripted"]
    with ScriptedLLMServer(_scripted_comparison({"adl": [5, 4, 5] * 2, "baseline": [1, 3, 1] * 2})) as server:
        monkeypatch.setenv("DIFFLENS_LLM_BASE_URL", server.base_url)
        shown = _cli(monkeypatch, "--protocol", "paper", "--compare", *truth)
        printed = _cli(monkeypatch, "--protocol", "paper", "--compare", "--budget", "0", "--json", *truth)
    assert shown.exit_code == 0, shown.output
    rows = {cells[0]: cells[1:] for line in shown.stdout.splitlines()
            if len(cells := [c.strip() for c in line.strip("│ ").split("│")]) == 3}
    assert rows["grade (median)"] == ["5", "1"] and rows["grader scores"] == ["5, 4, 5", "1, 3, 1"]
    assert rows["model interactions"] == ["1 used of 5"] * 2 and rows["LLM calls"] == ["2 used of 100"] * 2
    assert "ADL agent" in shown.stdout and "baseline agent" in shown.stdout
    assert printed.exit_code == 0, printed.output
    document = json.loads(printed.stdout)
    assert (document["adl"]["grade"], document["baseline"]["grade"]) == (5, 1)
    assert document["adl"]["budget"]["model_interactions"] == document["baseline"]["budget"]["model_interactions"] == 0


def test_cli_refuses_bad_combinations_in_one_line(llm_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    for args, message in [(["--protocol", "paper", "--budget", "7"], "pass --budget 0 | 5 | 50"),
                          (["--keywords", "--compare"], "--keywords is the offline keyword hypothesis"),
                          (["--repeat", "3"], "add --compare")]:
        result = _cli(monkeypatch, *args)
        assert result.exit_code == 2 and message in result.output
        assert len(result.output.strip().splitlines()) == 1, result.output


@pytest.fixture
def tiny_run(tiny_dir: Path, tiny_ft_dir: Path) -> str:
    return compute_adl(AdlRequest(base=str(tiny_dir), ft=str(tiny_ft_dir), corpus="self:", n=8, k=3)).run


def test_on_a_run_ask_model_follows_the_protocol_and_the_lenses_are_opt_in_for_both(
        llm_env: None, monkeypatch: pytest.MonkeyPatch, tiny_run: str) -> None:
    asked: list[tuple[int, float]] = []

    def generate_spy(model: Any, prompts: list[str], max_new_tokens: int, temperature: float) -> list[str]:
        asked.append((max_new_tokens, temperature))  # the tiny model's 128 positions could not hold 1024 tokens
        return [f"answer to {p}" for p in prompts]

    monkeypatch.setattr(run_environment, "generate_unsteered", generate_spy)
    with ScriptedLLMServer(_scripted_comparison({"adl": [4, 4, 4], "baseline": [2, 2, 2]})) as server:
        monkeypatch.setenv("DIFFLENS_LLM_BASE_URL", server.base_url)
        paper, _ = run_agent_op({"run": tiny_run, "llm": "openai:scripted", "protocol": "paper", "compare": True,
                            "lenses": True, "stream": False, **TRUTH})
        plain, _ = run_agent_op({"run": tiny_run, "llm": "openai:scripted", "stream": False})
    assert asked == [(1024, 0.8)] * 4 + [(256, 0.8)] * 2  # base and finetuned, per agent
    lenses = ["token_divergence", "diff_mining", "causal_check", "direction_effect", "difference_pca"]
    assert paper["adl"]["tools"] == PAPER_ADL_TOOLS + lenses
    assert paper["baseline"]["tools"] == PAPER_BASELINE_TOOLS + lenses
    answered = [m for b in server.bodies() for m in _tool_messages(b)]
    assert answered[0]["result"]["answers"] == [{"prompt": PROMPT, "base": f"answer to {PROMPT}",
                                                 "finetuned": f"answer to {PROMPT}"}]
    [run] = plain["runs"]
    assert run["tools"] == PAPER_ADL_TOOLS and run["protocol"] == "default"


def test_without_an_llm_the_agent_is_refused_with_an_offline_command_that_runs(
        llm_env: None, monkeypatch: pytest.MonkeyPatch, tiny_run: str) -> None:
    """The refusal (at submission: `check_agent_run`) names the run's offline commands; the first one works."""
    with pytest.raises(UserError, match="no LLM is configured") as refused:
        check_agent_run(AgentRun.from_json({"run": tiny_run[:10]}))
    offline = re.search(r"`difflens (agent \S+ --keywords)`", str(refused.value))
    assert offline is not None and tiny_run[:10] in offline.group(1)

    def keywords(method: str, params: dict[str, Any], **_: Any) -> dict[str, Any]:
        """The op the command calls, on the run it names, answered from the recorded evidence (the real op on
        the tiny run passes too, but reads every lens: two minutes on a busy machine)."""
        assert method == "agent.keywords" and load_run(params["run"]).run_id == tiny_run
        return json.loads(json.dumps(agent_keywords({"environment": CAKE_ENV}, JobContext())))

    monkeypatch.setattr(engine_call, "run_sync", keywords)
    ran = CliRunner().invoke(app, [*offline.group(1).split(), "--json"])
    assert ran.exit_code == 0, ran.output
    assert json.loads(ran.stdout)["kind"] == "keywords"
