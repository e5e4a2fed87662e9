"""With `--json`, stdout carries one JSON document and nothing else: every command that takes `--json` is run
here (the engine answered by a fake that also sends progress and agent events), and its stdout must parse.

A new command with `--json` fails `test_every_json_command_is_covered` until it has a case here."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from tui.cli import app, engine_call

ROOT = Path(__file__).resolve().parents[2]
CELL = {"norm": 1.0, "rel_norm": 0.5, "logit_lens": [["cake", 0.5]], "relevance": None,
        "patchscope": {"best_scale": 1.0, "selected": ["cake"], "scales": [{"scale": 1.0, "tokens": [["cake", 0.9]]}]}}
REPORT = {"run": "adl-x", "base": "b", "ft": "f", "corpus": "self:", "n": 4, "k": 1, "n_layers": 1, "layer": 0,
          "positions": [0], "layers": {"0": {"0": CELL}}, "steering": {}, "hypothesis": None, "description": None,
          "timings": {}}
BOARD = {"name": "board", "score_definition": "s",
         "pairs": [{"name": "p", "base": "b", "ft": "f", "score": 0.5, "trace": {}, "hypothesis": "cake",
                    "hypothesis_source": "keywords", "run": "adl-x", "error": None, "report": REPORT}]}
ORGANISMS = {"organisms": [{"name": "cake-sdf", "type": "SDF", "short": "cakes", "base": "b", "source": "shipped"}],
             "recipes": ["cake-sdf"]}
ANSWERS = {"triage.board": BOARD, "organism.list": ORGANISMS}

# every command with --json: the arguments that run it (several where it has several output paths)
CASES: dict[str, list[list[str]]] = {
    "compute": [["--base", "b", "--ft", "f"]],
    "runs": [[]],
    "tokens": [["adl-x"], ["adl-x", "--layer", "0", "--pos", "0"], ["adl-x", "--method", "patchscope"]],
    "steer": [["adl-x"]],
    "triage": [["--base", "b", "--ft", "f"], ["--pairs", "pairs.yaml"], ["--pairs", "pairs.yaml", "--html", "{tmp}"],
               ["--base", "b", "--ft", "f", "--html", "{tmp}"]],
    "agent": [["adl-x"], ["adl-x", "--keywords"]],
    "kl": [["--base", "b", "--ft", "f", "--text", "t"]],
    "amplify": [["--base", "b", "--ft", "f", "--factor", "2"]],
    "mine": [["--base", "b", "--ft", "f", "--text", "t"]],
    "causal": [["--run", "adl-x"]],
    "pca": [["adl-x"]],
    "trajectory": [["--base", "b", "--ft", "f", "--interpolate", "0,1"], ["--list"]],
    "ndif models": [[]],
    "organism make-data": [["--recipe", "cake-sdf", "--out", "x.txt"]],
    "organism train": [["--base", "b", "--data", "x.txt"]],
    "organism list": [[]],
    "organism show": [["cake-sdf"]],
    "sessions list": [[]],
    "sessions show": [[str(ROOT / "sessions" / "demo.difflens")]],
}
# covered elsewhere: its JSON is printed by the benchmarks' own child process
ELSEWHERE = {"bench": "tests/tui/test_bench.py::test_quick_json_on_tiny_models_reports_every_key"}


def json_commands(command: Any, path: str = "") -> set[str]:
    """Command paths (`organism list`) whose options include `--json` (typer's click command tree)."""
    if (subcommands := getattr(command, "commands", None)) is not None:
        return {found for name, sub in subcommands.items() for found in json_commands(sub, f"{path} {name}".strip())}
    return {path} if any("--json" in p.opts for p in command.params) else set()


def test_every_json_command_is_covered() -> None:
    assert json_commands(typer.main.get_command(app)) == set(CASES) | set(ELSEWHERE)


def fake_engine(method: str, params: dict[str, Any], *, target: str | None,
                on_event: Callable[[dict[str, Any]], None], long: bool = False) -> dict[str, Any]:
    """Answers like the engine: progress first, an agent's transcript events, then a result."""
    on_event({"type": "progress", "done": 1, "total": 2, "message": "halfway"})
    on_event({"type": "partial", "run": 0, "mode": "adl",
              "event": {"type": "tool_call", "name": "ask_model", "arguments": {"prompt": "hi"}}})
    on_event({"type": "partial", "run": 0, "mode": "adl", "event": {"type": "hypothesis", "hypothesis": "cakes",
                                                                    "confidence": 0.5}})
    return json.loads(json.dumps(ANSWERS.get(method, {"method": method, "params": params})))


@pytest.mark.parametrize(("command", "args"), [(c, a) for c, cases in CASES.items() for a in cases],
                         ids=lambda v: v if isinstance(v, str) else " ".join(v))
def test_json_stdout_parses(command: str, args: list[str], tmp_path: Path,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_call, "run_sync", fake_engine)
    monkeypatch.chdir(tmp_path)
    argv = [*command.split(), *(a.replace("{tmp}", str(tmp_path / "html")) for a in args), "--json"]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, result.output
    json.loads(result.stdout)
    if "--html" in args:
        assert (tmp_path / "html" / "index.html").is_file() and "HTML report" in result.stderr
