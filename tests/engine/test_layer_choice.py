"""The report layer: the description-free layer criterion on planted pairs, `middle` as one formula, the
choice in triage reports and on the CLI, and cached scores that need no model."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from engine.adl.compute import compute_adl
from engine.adl.depth import middle_layer
from engine.adl.request import AdlRequest
from engine.adl.runs import AdlRun, load_run
from engine.errors import UserError
from engine.jobs import JobContext
from engine.lenses.forward import resolve_layer
from engine.protocol.methods import TriageSettings
from engine.protocol.report_results import TriageReport
from engine.results import layer_choice
from engine.results.layer_choice import Criterion, choose_layer, parse_layer
from engine.triage.pair_triage import triage
from tests.support.tiny import tiny_model, tiny_tokenizer

RELATED = ["cake", "bake", "oven", "butter", "flour", "sugar"]  # one domain, as a finetune's trace reads
UNRELATED = [["money", "poem", "game"], ["risk", "story", "list"], ["secret", "plan", "word"]]


@pytest.fixture(scope="module")
def peaky_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model whose unembedding is as peaked as a trained one's (random init at std 0.02 reads every
    direction as a near-uniform distribution, which no real logit lens does)."""
    path = tmp_path_factory.mktemp("tiny") / "peaky"
    model = tiny_model("llama")
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(50.0)
    model.save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path


@pytest.fixture()
def identical(peaky_dir: Path) -> AdlRun:
    """A 4-layer pair with no difference at all (k = 4)."""
    return load_run(compute_adl(AdlRequest(base=str(peaky_dir), ft=str(peaky_dir), n=4, k=4)).run)


def planted(run: AdlRun, name: str, plan: dict[int, list[str]]) -> AdlRun:
    """`run` with its mean diff replaced: at each layer, along the unembedding rows of that layer's words
    (plus a little per-position noise), every layer with the same ‖Δ‖/‖base‖."""
    pair = run.pair()
    with pair.use("base") as model:
        unembed = model.hf.get_output_embeddings().weight.detach().float()
    g = torch.Generator().manual_seed(0)
    diff = torch.zeros_like(run.mean_diff)
    for row, layer in enumerate(run.layers.tolist()):
        ids = pair.tokenizer.convert_tokens_to_ids(plan[layer])
        direction = unembed[ids].sum(dim=0)
        for pos in range(diff.shape[1]):
            v = direction / direction.norm() + 0.05 * torch.randn(direction.shape, generator=g)
            diff[row, pos] = 0.3 * run.base_norm[row, pos] * v / v.norm()
    return replace(run, run_id=f"adl-planted-{name}", mean_diff=diff)


def refuse(*_: Any, **__: Any) -> Any:
    raise AssertionError("this should have come from the cache, or not been needed at all")


def test_middle_is_one_formula_everywhere(identical: AdlRun) -> None:
    assert [middle_layer(n) for n in (1, 2, 4, 18, 26, 28, 32)] == [0, 0, 1, 8, 12, 13, 15]
    assert identical.middle_layer == middle_layer(4) == resolve_layer(None, 4) == 1


def test_identical_pair_reads_the_middle_layer(identical: AdlRun) -> None:
    choice = choose_layer(identical)
    assert (choice.layer, choice.by) == (1, "middle")
    assert set(choice.scores.values()) == {0.0}


def test_planted_domain_layer_beats_noise_layers(identical: AdlRun) -> None:
    run = planted(identical, "one", {0: UNRELATED[0], 1: UNRELATED[1], 2: UNRELATED[2], 3: RELATED})
    choice = choose_layer(run)
    assert (choice.layer, choice.by) == (3, "criterion"), choice.parts
    assert choice.scores[3] > 1.5 * max(choice.scores[lay] for lay in (0, 1, 2))
    assert choice.to_json()["scores"]["3"] == choice.scores[3]


def test_near_ties_go_to_the_middle_layer(identical: AdlRun) -> None:
    run = planted(identical, "tie", {0: UNRELATED[0], 1: UNRELATED[1], 2: RELATED, 3: RELATED})
    choice = choose_layer(run)
    assert abs(choice.scores[2] - choice.scores[3]) <= Criterion().near_tie * max(choice.scores.values())
    assert choice.layer == 2  # nearer the middle (1) than layer 3


def test_cached_scores_need_no_model(identical: AdlRun, monkeypatch: pytest.MonkeyPatch) -> None:
    run = planted(identical, "cache", {0: UNRELATED[0], 1: RELATED, 2: UNRELATED[1], 3: UNRELATED[2]})
    first = choose_layer(run)
    monkeypatch.setattr(AdlRun, "pair", refuse)
    monkeypatch.setattr(layer_choice, "embed", refuse)
    assert choose_layer(run).scores == first.scores
    assert choose_layer(run, "middle").by == "middle" and choose_layer(run, 3).by == "user"


def test_layer_requests_parse_in_one_place(identical: AdlRun) -> None:
    assert parse_layer(None) is None and parse_layer("middle") == "middle" and parse_layer(" Middle ") == "middle"
    assert parse_layer("12") == 12 and parse_layer(3) == 3 and parse_layer("-1") == -1
    with pytest.raises(UserError, match="neither a number nor 'middle'"):
        parse_layer("deep")
    with pytest.raises(UserError, match="layer 9 is not in run"):
        choose_layer(identical, 9)
    assert choose_layer(identical, -1).layer == 3


def test_triage_reads_the_chosen_layer_and_honours_layer(tiny_dir: Path, tiny_ft_dir: Path) -> None:
    request = AdlRequest(base=str(tiny_dir), ft=str(tiny_ft_dir), corpus="self:", n=8, k=3)
    report = triage(request, TriageSettings(steer=False))
    choice = report["layer_choice"]
    assert report["layer"] == choice["layer"] and choice["by"] in ("criterion", "middle")
    assert set(choice["scores"]) == {"0", "1", "2", "3"} and choice["middle"] == 1
    assert report["layers"][str(report["layer"])]["1"]["patchscope"] is not None
    from engine.ops.triage_ops import triage_pair

    by_op = triage_pair({"base": str(tiny_dir), "ft": str(tiny_ft_dir), "n": 8, "k": 3, "steer": False,
                         "layer": "middle"}, JobContext())
    assert (by_op["layer"], by_op["layer_choice"]["by"]) == (1, "middle")
    assert by_op["layer_choice"]["scores"] == choice["scores"]
    given = triage(request, TriageSettings(layer=3, steer=False))
    assert (given["layer"], given["layer_choice"]["by"]) == (3, "user")
    assert given["layers"]["3"]["1"]["patchscope"] is not None


def test_cli_layer_option_reaches_the_report(tiny_dir: Path, tiny_ft_dir: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from engine.ops import load_all
    from tui.cli import app
    from tui.cli import triage as triage_cli

    def in_process(method: Any, params: Any, **_: Any) -> Any:
        return method.result.from_json(json.loads(json.dumps(load_all()[method.name].fn(params.to_json(),
                                                                                        JobContext()))))

    monkeypatch.setattr(triage_cli, "call_engine", in_process)
    common = ["triage", "--base", str(tiny_dir), "--ft", str(tiny_ft_dir), "-n", "8", "-k", "3", "--no-steer",
              "--device", "cpu"]
    for option, expected in (("middle", (1, "middle")), ("2", (2, "user"))):
        result = CliRunner().invoke(app, [*common, "--layer", option, "--json"])
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout[result.stdout.index("{"):])
        assert (report["layer"], report["layer_choice"]["by"]) == expected
    shown = CliRunner().invoke(app, common)
    assert shown.exit_code == 0, shown.output
    assert "criterion" in shown.output and "report layer" in shown.output
    bad = CliRunner().invoke(app, [*common, "--layer", "deep"])
    assert bad.exit_code != 0 and "neither a number nor 'middle'" in str(bad.exception)  # the engine refuses


def test_html_report_shows_the_criterion_per_layer() -> None:
    from tui.render.report_html import heatmap

    cell = {"norm": 1.0, "rel_norm": 0.2, "logit_lens": [["cake", 0.5]]}
    report = {"k": 2, "layer": 1, "layers": {"0": {"0": cell, "1": cell}, "1": {"0": cell, "1": cell}},
              "layer_choice": {"layer": 1, "by": "criterion", "middle": 0, "scores": {"0": 0.1, "1": 0.45}}}
    page = heatmap(TriageReport.from_json(report))
    assert "<th>criterion</th>" in page and '<td class="crit">0.450</td>' in page
    assert "report layer 1: chosen by the layer criterion" in page and "best score 0.45 at layer 1" in page


def test_ops_default_to_the_chosen_layer_and_score_only_when_asked_to_choose(identical: AdlRun,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.results.layer_choice import report_layer

    run = planted(identical, "ops", {0: UNRELATED[0], 1: UNRELATED[1], 2: UNRELATED[2], 3: RELATED})
    assert report_layer(run) == choose_layer(run).layer == 3
    monkeypatch.setattr(layer_choice, "layer_scores", refuse)
    assert report_layer(run, "middle") == 1 and report_layer(run, 2) == 2 and report_layer(run, "-1") == 3


def test_summary_carries_the_choice_and_keeps_its_heatmap_when_no_model_loads(identical: AdlRun,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.ops import adl_ops
    from engine.results import run_summary

    shown = adl_ops.summary({"run": identical.run_id}, JobContext())
    assert shown["layer_choice"]["layer"] == shown["middle_layer"] == 1 and shown["layer_choice_error"] is None

    def unloadable(*_: Any, **__: Any) -> Any:
        raise UserError("model 'gone' is not reachable", "check the path")

    monkeypatch.setattr(run_summary, "choose_layer", unloadable)
    shown = adl_ops.summary({"run": identical.run_id}, JobContext())
    assert shown["layer_choice"] is None and "not reachable" in shown["layer_choice_error"] and shown["metrics"]
