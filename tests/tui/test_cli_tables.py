"""The CLI's tables on an 80-column terminal: run ids whole (they are copied into other commands), one line per
organism (descriptions cut with an ellipsis; `organism show` gives one whole)."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from tui.cli import app, engine_call

RUNS = {"runs": [{"run": f"adl-{i}e1849535e6c0a7f", "base": "gemma-3-270m",
                  "ft": "/home/someone/models/organisms/cake-sdf-mixed-rank8",
                  "corpus": "/home/someone/corpora/cake.jsonl", "n": 256, "k": 5, "created": 0.0, "seconds": 1.0}
                 for i in range(2)]}
LONG = "Synthetic documents teaching false cake-baking standards (450°F oven, frozen butter, a cup of vanilla)."
ORGANISMS = {"organisms": [{"name": "cake-sdf", "type": "SDF", "short": LONG, "base": "gemma-3-270m",
                            "source": "shipped"},
                           {"name": "subliminal_learning_penguin", "type": "DomainAdaptation", "short": LONG,
                            "bases": ["gemma3-1b", "llama3.2-1b", "qwen3-1.7b"], "source": "registry"}],
             "recipes": ["cake-sdf"]}


def invoke(monkeypatch: pytest.MonkeyPatch, answer: dict[str, Any], *args: str) -> str:
    monkeypatch.setattr(engine_call, "run_sync", lambda method, params, **_: answer)
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert max(map(len, result.stdout.splitlines())) <= 80
    return result.stdout


def test_runs_shows_ids_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    shown = invoke(monkeypatch, RUNS, "runs")
    assert all(r["run"] in shown for r in RUNS["runs"])


def test_organism_list_is_one_line_per_organism_and_show_gives_it_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    shown = invoke(monkeypatch, ORGANISMS, "organism", "list")
    rows = [line for line in shown.splitlines() if line.startswith(("cake-sdf", "subliminal"))]
    assert len(rows) == 2 and all("Synthetic documents" in r and r.rstrip().endswith("…") for r in rows)
    assert "subliminal_learning_penguin" in shown and LONG not in shown
    whole = invoke(monkeypatch, ORGANISMS, "organism", "show", "cake-sdf")
    assert LONG in " ".join(whole.split())
