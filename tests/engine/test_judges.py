"""Judges as a setting: resolution, the three LLM judges' protocols against a scripted OpenAI-compatible server on
loopback, ungraded items instead of crashes or silent stand-ins, judge-keyed caches, and `--protocol paper`."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from engine.adl.compute import compute_adl
from engine.adl.request import AdlRequest
from engine.adl.runs import load_run
from engine.agent.run_environment import SteeringSettings
from engine.errors import Ungraded, UserError
from engine.jobs import JobContext
from engine.judges.client import JudgeClient
from engine.judges.judge_config import OFFLINE_LABELS, Judge, resolve_judge
from engine.ops import load_all
from engine.protocol.methods import TriageSettings
from engine.protocol.report_results import BoardEntry, TriageReport
from engine.protocol.results import PatchscopeCell
from engine.readouts.relevance import frequent_words
from engine.results.calibrated_steering import CalibrationSettings, calibrate
from engine.results.judged_relevance import token_grader
from engine.results.known_finetune import KnownFinetune
from engine.results.readout_cells import patchscope_cells
from engine.triage.board import run_board
from engine.triage.pair_triage import triage
from engine.triage.pairs import PairEntry
from store import results
from store.errors import ActionableError
from tests.support.agent_llm_server import ScriptedLLMServer
from tui.cli import app, readouts
from tui.cli import triage as triage_cli
from tui.cli.output import fail, out
from tui.render.report_html import pair_page
from tui.render.report_terminal import report_view
from tui.state import TokensState, apply_patchscope

KEY = "sk-judge-test-0123456789abcdef"
MODEL = "judge-m"
SMALL = CalibrationSettings(grid_size=2, n_prompts=1, samples=2, max_new_tokens=3)


@pytest.fixture(autouse=True)
def judge_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DIFFLENS_JUDGE", "DIFFLENS_LLM_MODEL", "DIFFLENS_LLM_API_KEY", "DIFFLENS_LLM_BASE_URL",
                 "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)


def write_config(home: Path, text: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    path = home / "config.toml"
    path.write_text(text)
    path.chmod(0o600)


def honest(body: dict[str, Any]) -> dict[str, Any]:
    """A judge that reads each prompt and answers in its protocol: coherent; relevant when the token is a
    baking word; the first scale listed with its first token."""
    prompt = body["messages"][-1]["content"]
    if "[ANSWER START]" in prompt:
        return {"text": "Reads fine.\nANSWER: COHERENT"}
    if "[CANDIDATE TOKENS]" in prompt:
        listed = re.findall(r"^(\d+)\. '(.*)'$", prompt, re.MULTILINE)
        return {"text": "\n".join(f"ANSWER[{i}]: {'RELEVANT' if t.strip() in ('cake', 'bake') else 'IRRELEVANT'}"
                                  for i, t in listed)}
    if "BEST_SCALE" in prompt:
        scale, first = re.search(r"^SCALE (\S+): '([^']*)'", prompt, re.MULTILINE).groups()  # type: ignore[union-attr]
        return {"text": f"BEST_SCALE: {scale}\nSELECTED_TOKENS: {first}"}
    return {"text": "?"}


@pytest.fixture()
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedLLMServer]:
    with ScriptedLLMServer(honest) as srv:
        monkeypatch.setenv("DIFFLENS_LLM_BASE_URL", srv.base_url)
        yield srv


@pytest.fixture()
def request_(tiny_dir: Path, tiny_ft_dir: Path) -> AdlRequest:
    return AdlRequest(base=str(tiny_dir), ft=str(tiny_ft_dir), corpus="self:", n=12, k=3)


def prompts_of(srv: ScriptedLLMServer, marker: str) -> list[str]:
    return [b["messages"][-1]["content"] for b in srv.bodies() if marker in b["messages"][-1]["content"]]


SHORT = SteeringSettings(max_new_tokens=4)


def options(**kw: Any) -> TriageSettings:
    return TriageSettings(n_prompts=1, description="baking cakes", **kw)


def test_the_judge_comes_from_the_flag_then_the_environment_then_the_config_file(
        monkeypatch: pytest.MonkeyPatch, isolated_home: Path) -> None:
    assert resolve_judge().offline and resolve_judge().labels() == OFFLINE_LABELS and resolve_judge().key() == {}
    write_config(isolated_home, '[llm]\nmodel = "openai:agent-m"\n[judge]\nmodel = "openai:file-m"\n'
                                'base_url = "http://user:pw@127.0.0.1:9/v1"\ntimeout_s = 7\n')
    judge = resolve_judge()
    assert judge.identity == "openai:file-m" and judge.config is not None and judge.config.timeout_s == 7
    assert judge.key() == {"judge": "openai:file-m"} and "pw" not in json.dumps(judge.labels())
    monkeypatch.setenv("DIFFLENS_JUDGE", "anthropic:env-m")
    assert resolve_judge().identity == "anthropic:env-m"
    assert resolve_judge("openai:flag-m").identity == "openai:flag-m"
    assert resolve_judge("offline").offline
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.delenv("DIFFLENS_JUDGE")
    write_config(isolated_home, '[judge]\nmodel = "openai:file-m"\n')
    with pytest.raises(UserError, match="no API key for openai:file-m"):
        resolve_judge()


def test_configured_judge_grades_all_three_with_the_papers_protocols(request_: AdlRequest,
                                                                      server: ScriptedLLMServer) -> None:
    report = triage(request_, options(judge=f"openai:{MODEL}"), steering_samples=SHORT)
    assert report["judges"] == {"coherence": f"openai:{MODEL}", "relevance": f"openai:{MODEL}",
                                "patchscope": f"openai:{MODEL}"}
    assert {b["model"] for b in server.bodies()} == {MODEL}
    # coherence: one call per calibration sample, each the coherence prompt around one steered answer
    coherence = prompts_of(server, "[ANSWER START]")
    assert coherence and all(p.rstrip().endswith("'ANSWER: COHERENT' or 'ANSWER: INCOHERENT'.") for p in coherence)
    assert all(cell["ungraded"] == 0 and cell["strength"] > 0 for cell in report["steering"].values())
    # relevance: every readout asked in three orders of the same tokens, the first as read
    relevance = prompts_of(server, "[CANDIDATE TOKENS]")
    assert relevance and len(relevance) % 3 == 0 and "[DOMAIN]\nbaking cakes" in relevance[0]
    listed = [re.findall(r"^\d+\. '(.*)'$", p, re.MULTILINE) for p in relevance]
    for first, second, third in zip(listed[::3], listed[1::3], listed[2::3], strict=True):
        assert sorted(first) == sorted(second) == sorted(third)
    cell = report["layers"]["0"]["0"]["relevance"]
    assert {"diff", "base", "ft"} <= set(cell) and "ungraded" not in cell
    # Patchscope: one scale prompt per position; the judge's scale and tokens are the cell's
    assert len(prompts_of(server, "BEST_SCALE")) == 3
    scope = report["layers"][str(report["layer"])]["0"]["patchscope"]
    assert scope["chosen_by"] == "llm" and scope["judge"] == f"openai:{MODEL}" and len(scope["selected"]) == 1
    assert scope["best_scale"] == scope["scales"][0]["scale"]


def test_the_relevance_judge_gets_the_finetuning_datas_frequent_words(server: ScriptedLLMServer) -> None:
    texts = ["Bake the cake at 450F with frozen butter.", "A cake needs butter, sugar and a hot oven."] * 3
    assert frequent_words(texts, 3) == ["cake", "butter", "bake"]
    grade = token_grader(KnownFinetune("baking", "SDF", texts), resolve_judge(f"openai:{MODEL}"))
    assert grade("baking", [" cake", " river"]) == [True, False]
    sent = prompts_of(server, "[CANDIDATE TOKENS]")
    assert len(sent) == 3 and "[FREQUENT TOKENS OF THE FINETUNING DATA]\ncake, butter, bake" in sent[0]


class DeadLLM:
    """A backend whose every call fails with an error that echoes the key and a URL's credentials."""

    label, supports_tools, secrets = "openai:m", False, (KEY,)

    def __init__(self) -> None:
        self.calls = 0

    def chat(self, messages: list[dict[str, Any]], tools: Any = None, **_: Any) -> Any:
        self.calls += 1
        raise ConnectionError(f"cannot reach http://bob:hunter22@127.0.0.1:9/v1 with {KEY}")


def test_a_dead_judge_is_ungraded_with_a_redacted_reason_and_given_up_on() -> None:
    llm = DeadLLM()
    client = JudgeClient(llm)
    reasons = []
    for _ in range(5):
        with pytest.raises(Ungraded) as failed:
            client("is this coherent?")
        reasons.append(str(failed.value))
    assert llm.calls == 3 and reasons[0].startswith("judge call failed: ")
    assert "hunter22" not in " ".join(reasons) and KEY not in " ".join(reasons)
    assert reasons[-1].startswith("judge skipped after 3 failed calls in a row")


@pytest.mark.parametrize("failure", ["garbage", "429", "timeout"])
def test_a_failing_judge_leaves_ungraded_items_and_a_finished_report(
        request_: AdlRequest, failure: str, monkeypatch: pytest.MonkeyPatch, isolated_home: Path) -> None:
    item = {"garbage": {"text": "I would rather not say."}, "429": {"status": 429},
            "timeout": {"delay": 1.0, "text": "ANSWER: COHERENT"}}[failure]
    write_config(isolated_home, "[judge]\ntimeout_s = 0.2\nmax_retries = 1\n")
    with ScriptedLLMServer(lambda body: item) as srv:
        monkeypatch.setenv("DIFFLENS_LLM_BASE_URL", srv.base_url)
        report = triage(request_, options(judge=f"openai:{MODEL}"), steering_samples=SHORT)
    assert report["judges"]["relevance"] == f"openai:{MODEL}" and report["timings"]
    # Patchscope: no scale chosen, every scale still there to read
    for pos in map(str, report["positions"]):
        scope = report["layers"][str(report["layer"])][pos]["patchscope"]
        assert scope["chosen_by"].startswith("ungraded: ") and scope["selected"] == [] and len(scope["scales"]) > 1
    # relevance: null cells with the reason, not zeros
    cell = report["layers"]["1"]["1"]["relevance"]
    assert cell["diff"] is None and cell["ungraded"]["diff"]
    assert report["relevance_summary"] is None
    # calibration: the samples are reported ungraded and none counts as coherent
    for entry in report["steering"].values():
        assert entry["ungraded"] > 0 and entry["strength"] == 0 and entry["prompts"] == []
    if failure == "garbage":  # asked at most once per item although nothing was cached (empty samples are not asked)
        assert "lacks" in cell["ungraded"]["diff"]
        assert len(prompts_of(srv, "BEST_SCALE")) == 3 and 0 < len(prompts_of(srv, "[ANSWER START]")) <= 3 * 7 * 2 * 2
    assert failure == "garbage" or len(srv.requests) < 20   # a dead judge is given up on, not asked per item
    assert results.list_results("calibration") == [] and results.list_results("relevance") == []
    shows_the_judges_and_the_ungraded(report)


def shows_the_judges_and_the_ungraded(report: dict[str, Any]) -> None:
    """The Rich report, the HTML page and the TUI's token pane name the judge and the ungraded items."""
    with out.capture() as captured:
        out.print(report_view(TriageReport.from_json(report)))
    text = captured.get()
    assert f"relevance by openai:{MODEL}" in text and "ungraded: " in text and "calibration samples ungraded" in text
    html = pair_page(BoardEntry.from_json({"name": "p", "base": "b", "ft": "f", "report": report}))
    assert f"coherence by openai:{MODEL}" in html and "ungraded: " in html
    scope = report["layers"][str(report["layer"])]["0"]["patchscope"]
    pane = apply_patchscope(TokensState(), PatchscopeCell.from_json(scope))
    assert pane.best_scale is None and pane.patch_judge.startswith("ungraded: ") and len(pane.scales) > 1


def test_cache_keys_name_the_judge_model(request_: AdlRequest, server: ScriptedLLMServer) -> None:
    run = load_run(compute_adl(request_).run)
    judges = [Judge(), resolve_judge("openai:judge-a"), resolve_judge("openai:judge-b")]
    for judge in judges:
        patchscope_cells(run, 2, [0, 1, 2], scales=[0.5, 1.0, 2.0], top_k=5, judge=judge)
        calibrate(run, 2, [0], SMALL, judge=judge)
    scope = [r["inputs"] for r in results.list_results("patchscope")]
    assert sorted(i.get("judge", "") for i in scope) == ["", "openai:judge-a", "openai:judge-b"]
    offline = next(i for i in scope if "judge" not in i)
    assert set(offline) == {"run", "layer", "positions", "scales", "prompts", "set_k", "norm", "chooser", "top_k",
                           "side"}
    calibrations = [r["inputs"]["judge"] for r in results.list_results("calibration")]
    assert sorted(calibrations) == ["openai:judge-a", "openai:judge-b", "perplexity"]
    assert not any(server.base_url in json.dumps(r["inputs"]) for r in results.list_results())


def test_paper_protocol_bisects_per_prompt_and_averages(request_: AdlRequest, server: ScriptedLLMServer) -> None:
    run = load_run(compute_adl(request_).run)
    paper = CalibrationSettings.paper()
    short = replace(paper, prompts=paper.calibration_prompts()[:2], samples=2, max_new_tokens=3)
    [cell] = calibrate(run, 2, [0], short, judge=resolve_judge(f"openai:{MODEL}"))
    assert len(prompts_of(server, "[ANSWER START]")) == (12 + 6) * 2   # 12 steps of prompt 1, 6 of prompt 2
    assert len(cell["coherence"]) == 18 and cell["coherence"][0][0] == 50.0
    t1 = 100 - 100 / 2**12                                                # every step passed
    assert cell["per_prompt"] == pytest.approx([t1, 2 * t1 * (1 - 2**-6)])
    assert cell["strength"] == pytest.approx(sum(cell["per_prompt"]) / 2)
    [stored] = results.list_results("calibration")
    assert stored["inputs"]["protocol"] == "paper" and stored["inputs"]["max"] == 100.0
    assert stored["inputs"]["follow_steps"] == 6 and stored["inputs"]["grader"] == "reference"


def in_process(method: Any, params: Any, **_: Any) -> Any:
    """The CLI's engine call, run here: an actionable error is the CLI's one-line failure."""
    try:
        return method.result.from_json(json.loads(json.dumps(load_all()[method.name].fn(params.to_json(),
                                                                                        JobContext()))))
    except ActionableError as exc:
        fail(str(exc))


def test_cli_refuses_the_paper_protocol_without_a_judge_and_reports_the_judges(
        request_: AdlRequest, server: ScriptedLLMServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(triage_cli, "call_engine", in_process)
    monkeypatch.setattr(readouts, "call_engine", in_process)
    run = compute_adl(request_).run
    steer = CliRunner().invoke(app, ["steer", run, "--strength", "auto", "--protocol", "paper"])
    assert steer.exit_code == 2 and "needs an LLM judge" in steer.output and len(steer.output.strip().splitlines()) == 1
    args = ["triage", "--base", request_.base, "--ft", request_.ft, "-n", "12", "-k", "3", "--prompts", "1",
            "--description", "baking cakes"]
    refused = CliRunner().invoke(app, [*args, "--protocol", "paper"])
    assert refused.exit_code == 2 and "--judge" in refused.output and not server.requests
    judged = CliRunner().invoke(app, [*args, "--judge", f"openai:{MODEL}", "--no-steer", "--json"])
    assert judged.exit_code == 0, judged.output
    assert json.loads(judged.stdout[judged.stdout.index("{"):])["judges"]["patchscope"] == f"openai:{MODEL}"
    shown = CliRunner().invoke(app, ["tokens", run, "--method", "patchscope", "--layer", "2", "--judge",
                                     f"openai:{MODEL}"])
    assert shown.exit_code == 0 and f"openai:{MODEL}" in shown.output


def test_a_board_pair_is_triaged_again_under_another_judge(request_: AdlRequest, server: ScriptedLLMServer) -> None:
    entries = [PairEntry("pair", request_.base, request_.ft)]
    settings = TriageSettings(n=12, k=3, steer=False, device="cpu")
    first = run_board(entries, settings, JobContext())["pairs"][0]
    judged = run_board(entries, replace(settings, judge=f"openai:{MODEL}"), JobContext())["pairs"][0]
    again = run_board(entries, replace(settings, judge=f"openai:{MODEL}"), JobContext())["pairs"][0]
    offline = run_board(entries, settings, JobContext())["pairs"][0]
    assert not first["skipped"] and not judged["skipped"] and again["skipped"] and offline["skipped"]
    assert len(prompts_of(server, "BEST_SCALE")) == 3
