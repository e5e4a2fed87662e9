"""Triage settings are defined once: the CLI's single-pair triage and a board of the same pair with the same flags
plan the same `TriagePair`; a board file's `settings:` block, the board's call and each pair's own keys layer in
that order; unknown keys fail in one line; and each pair is parsed once, the runners taking the planned entry."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from engine.adl.request import AdlRequest
from engine.errors import UserError
from engine.jobs import JobContext
from engine.ops.board_ops import triage_board
from engine.protocol.methods import TriageBoard, TriagePair, TriageSettings
from engine.protocol.params import JsonRecord, ParamsError
from engine.triage import board as board_module
from engine.triage import devices
from engine.triage import planned as planned_module
from engine.triage.planned import Planned

BASE, FT = "gemma-3-270m", "demo"  # named models: their specs resolve without loading or converting anything
FLAGS = ["-n", "8", "-k", "3", "--no-steer", "--device", "cpu", "--null", "2", "--null-steer", "--layer", "1",
         "--prompts", "2"]


class Stop(UserError):
    """What the stand-in triage raises once it has seen its arguments: the board records it as the pair's error."""


@pytest.fixture
def triaged(monkeypatch: pytest.MonkeyPatch) -> list[tuple[AdlRequest, TriagePair]]:
    """Every (request, settings) a board hands to `triage`, which runs nothing."""
    seen: list[tuple[AdlRequest, TriagePair]] = []

    def stand_in(request: AdlRequest, settings: TriagePair, ctx: JobContext) -> dict[str, Any]:
        seen.append((request, settings))
        raise Stop("stand-in triage", "nothing to fix")

    monkeypatch.setattr(board_module, "triage", stand_in)
    return seen


@pytest.fixture
def planned(monkeypatch: pytest.MonkeyPatch) -> list[Planned]:
    """Every pair the board plans (in plan order)."""
    out: list[Planned] = []
    real = board_module.plan

    def recording(items: list[Planned]) -> list[Planned]:
        ordered = real(items)
        out.extend(ordered)
        return ordered

    monkeypatch.setattr(board_module, "plan", recording)
    return out


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The class of every triage-settings JSON parse."""
    seen: list[str] = []
    real = JsonRecord.from_json.__func__  # type: ignore[attr-defined]

    def counting(cls: type[JsonRecord], data: Any) -> Any:
        if issubclass(cls, TriageSettings):
            seen.append(cls.__name__)
        return real(cls, data)

    monkeypatch.setattr(JsonRecord, "from_json", classmethod(counting))
    return seen


def cli(monkeypatch: pytest.MonkeyPatch, args: list[str]) -> dict[str, Any]:
    """What `difflens triage ARGS` sends to the engine (nothing runs)."""
    from typer.testing import CliRunner

    from tui.cli import app, board, triage

    sent: list[Any] = []

    def capture(method: Any, params: Any, **_: Any) -> Any:
        sent.append(params)
        return method.result.from_json({"pairs": []} if method.name == "triage.board" else {"run": "r"})

    monkeypatch.setattr(board, "call_engine", capture)
    monkeypatch.setattr(triage, "call_engine", capture)
    monkeypatch.setattr(triage, "report_view", lambda report, grid: "")
    result = CliRunner().invoke(app, ["triage", *args, "--json"])
    assert result.exit_code == 0, result.output
    return {"params": sent[0]}


def test_a_board_pair_and_a_cli_triage_with_the_same_flags_plan_the_same_settings(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, triaged: list[Any]) -> None:
    single = cli(monkeypatch, ["--base", BASE, "--ft", FT, "--description", "baking", *FLAGS])["params"]
    assert isinstance(single, TriagePair) and single.n == 8 and single.layer == "1" and single.steer is False
    pairs = tmp_path / "pairs.yaml"
    pairs.write_text(f"pairs:\n  - {{name: cake, base: {BASE}, ft: {FT}}}\n")
    board = cli(monkeypatch, ["--pairs", str(pairs), "--description", "baking", *FLAGS])["params"]
    assert board.settings == {"n": 8, "k": 3, "steer": False, "device": "cpu", "null": 2, "null_steer": True,
                              "layer": "1", "n_prompts": 2, "description": "baking"}  # the flags typed, no defaults
    triage_board(board.to_json(), JobContext())
    (request, on_board), = triaged
    assert on_board == single  # the same dataclass, every default from the same place
    assert request.to_json() == AdlRequest(base=BASE, ft=FT, n=8, k=3, device="cpu").to_json()


def test_a_pairs_own_settings_override_the_call_which_overrides_the_file(
        tmp_path: Path, triaged: list[Any], planned: list[Planned]) -> None:
    pairs = tmp_path / "pairs.yaml"
    pairs.write_text("settings: {n: 64, layer: 2, device: cpu, \"null\": 0}\npairs:\n"
                     f"  - {{name: plain, base: {BASE}, ft: {FT}}}\n"
                     f"  - {{name: own, base: {BASE}, ft: {FT}, n: 32, steer: false, k: 2, description: cakes}}\n")
    result = triage_board({"pairs": str(pairs), "settings": {"k": 4, "top_k": 5}}, JobContext())
    by_name = {item.name: item.pair for item in planned}
    plain, own = by_name["plain"], by_name["own"]
    assert (plain.n, plain.k, plain.layer, plain.top_k, plain.steer, plain.null) == (64, 4, 2, 5, True, 0)
    assert (own.n, own.k, own.layer, own.top_k, own.steer, own.description) == (32, 2, 2, 5, False, "cakes")
    assert plain.corpus == TriageSettings.corpus and plain.n_prompts == TriageSettings.n_prompts  # the defaults
    assert {settings.n for _, settings in triaged} == {64, 32}
    keys = {p["name"]: p for p in result["pairs"]}
    assert keys["own"]["description"] == "cakes" and keys["plain"]["description"] is None
    assert len({item.key for item in planned}) == 2  # other settings, another stored outcome


@pytest.mark.parametrize(("text", "message"), [
    ("pairs: [{name: a, base: b, ft: c, colour: red}]\n", "p.yaml: pair 1: unknown field(s) colour"),
    ("pairs: [{name: a, base: b, ft: c, n: many}]\n", "p.yaml: pair 1: parameter 'n' must be int"),
    ("pairs: [{name: a, base: b, ft: c, protocol: fast}]\n", "pair 1: parameter 'protocol' must be 'default' or"),
    ("settings: {top_k: 0}\npairs: [{name: a, base: b, ft: c}]\n", "p.yaml: settings: top_k must be positive"),
    ("settings: {ray: [a, b]}\npairs: [{name: a, base: b, ft: c}]\n", "p.yaml: settings: parameter 'ray'"),
    ("settings: {null: 2}\npairs: [{name: a, base: b, ft: c}]\n", "p.yaml: settings: a key reads as YAML's null"),
    ("pairs: [{name: a, base: b, ft: c, null: 2}]\n", "p.yaml: pair 1: a key reads as YAML's null"),
])
def test_bad_board_keys_and_values_fail_in_one_line_naming_them(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "p.yaml").write_text(text)
    with pytest.raises(UserError) as caught:
        triage_board({"pairs": str(tmp_path / "p.yaml")}, JobContext())
    assert message in str(caught.value) and " — " in str(caught.value) and "\n" not in str(caught.value)


def test_unknown_settings_in_a_board_call_fail_in_one_line_naming_the_key() -> None:
    with pytest.raises(ParamsError) as caught:
        triage_board({"pairs": [{"name": "a", "base": BASE, "ft": FT}], "settings": {"colour": "red", "n": 8}},
                     JobContext())
    assert str(caught.value).startswith("settings: unknown setting(s) colour — allowed settings: backend, ")
    assert "\n" not in str(caught.value)


def test_the_serial_runner_triages_the_planned_pair_parsed_once(
        parses: list[str], triaged: list[Any], planned: list[Planned]) -> None:
    pairs = [{"name": "a", "base": BASE, "ft": FT}, {"name": "b", "base": BASE, "ft": FT, "n": 16},
             {"name": "c", "base": BASE, "ft": BASE}]
    result = triage_board({"pairs": pairs, "settings": {"n": 8, "device": "cpu", "null": 0}}, JobContext())
    assert all("stand-in triage" in p["error"] for p in result["pairs"])
    assert parses == ["TriageSettings", "TriageSettings"]  # the call's settings once, pair b's own keys once
    assert [settings for _, settings in triaged] == [item.pair for item in planned]
    assert all(given is item.pair for (_, given), item in zip(triaged, planned, strict=True))  # taken as it is


def test_a_device_worker_parses_each_planned_pairs_json_once(
        monkeypatch: pytest.MonkeyPatch, parses: list[str], triaged: list[Any], planned: list[Planned]) -> None:
    sent: list[list[dict[str, Any]]] = []
    real_share = devices.Workers.share

    def share(self: devices.Workers, group: list[Planned]) -> tuple[list[dict[str, Any]], str | None, bool]:
        out = real_share(self, group)
        sent.append(json.loads(json.dumps(out[0])))  # what crosses to the worker is JSON
        return out

    monkeypatch.setattr(devices.Workers, "share", share)
    monkeypatch.setattr(devices, "ProcessPoolExecutor", lambda max_workers, mp_context: ThreadPoolExecutor(1))
    pairs = [{"name": "a", "base": BASE, "ft": FT}, {"name": "b", "base": BASE, "ft": FT, "k": 2}]
    triage_board({"pairs": pairs, "settings": {"n": 8, "null": 0}, "devices": "cpu,cpu"}, JobContext())
    assert [item["name"] for group in sent for item in group] == ["a", "b"]  # one base group, one lane
    assert parses == ["TriageSettings", "TriageSettings", "TriagePair", "TriagePair"]  # board, b; then the worker
    assert [(settings.device, settings.judge) for _, settings in triaged] == [("cpu", "offline")] * 2  # the driver's
    assert [settings for _, settings in triaged] == [TriagePair.from_json(item["pair"]) for item in sent[0]]


def test_a_planned_pair_survives_its_json(planned: list[Planned], triaged: list[Any]) -> None:
    triage_board({"pairs": [{"name": "a", "base": BASE, "ft": FT, "layers": [1, 2]},
                            {"name": "gone", "base": BASE, "ft": "/no/such/model"}]}, JobContext())
    for item in planned:
        assert Planned.from_json(json.loads(json.dumps(item.to_json()))) == item
    assert planned[-1].error and "does not exist" in planned[-1].error and planned[-1].loads is None


def test_a_pair_finished_under_an_older_method_is_triaged_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """The key names the null design, criterion, calibration search and sampling rule: a board re-run after any of
    them changed recomputes the pair rather than showing the old significance."""
    pair = TriagePair(base=BASE, ft=FT, n=8, k=3, steer=False)
    before = planned_module.resolved("a", pair, None).key
    assert planned_module.resolved("a", pair, None).key == before
    for method, changed in [("null", "another-null-design"), ("calibration", "another-search"),
                            ("sampling", "another-rule"), ("criterion", {"version": -1})]:
        monkeypatch.setitem(planned_module.METHODS, method, changed)
        assert planned_module.resolved("a", pair, None).key != before, method
        monkeypatch.undo()


def test_a_board_recorded_with_flat_settings_keeps_them() -> None:
    """Sessions recorded before the settings were one object sent them beside `pairs`; replaying one must not
    drop them silently (a `settings` object given too wins)."""
    params = TriageBoard.from_json({"pairs": [{"name": "a", "base": BASE, "ft": FT}], "null": 4, "steer": False,
                                    "settings": {"steer": True}, "reports": True})
    assert params.settings == {"null": 4, "steer": True} and params.reports is True
    assert TriageBoard.from_json({"pairs": "p.yaml"}).settings is None
