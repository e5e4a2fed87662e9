"""The benchmarks run end to end on tiny models and report every key the README and `--json` promise.

No timing assertions: the numbers depend on the machine and its load; only their presence is checked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from tui.cli.bench import register

ROOT = Path(__file__).resolve().parents[2]
PEAK_KEYS = {"adl_difflens", "adl_floor", "adl_baseline", "adl_joint", "adl_sequential", "logit_lens", "patchscope",
             "steering_batched", "steering_one_by_one", "load_cached", "replay", "board_single_pair", "board_shared",
             "tui_cached"}


def test_quick_json_on_tiny_models_reports_every_key(tiny_dir: Path, tiny_ft_dir: Path, isolated_home: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--json", "--device", "cpu",
                           "--base", str(tiny_dir), "--ft", str(tiny_ft_dir)],
                          cwd=ROOT, env=os.environ | {"PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(done.stdout)
    assert data["device"].startswith("cpu")
    assert data["adl"]["floor_ratio"] > 0 and data["adl"]["baseline_ratio"] > 0
    assert data["steering"]["batched_ratio"] > 0
    assert data["replay"]["first_paint_s"] > 0 and data["replay"]["torch_loaded"] is False
    assert set(data["peak_memory_mb"]) >= PEAK_KEYS and all(v > 0 for v in data["peak_memory_mb"].values())
    assert [item["n"] for item in data["adl"]["by_n"]] == [64, 256]
    assert data["memory"]["max_abs_diff"] < 1e-5          # --sequential gives the joint mode's diff
    assert data["board"]["adapters"] == 4 and data["board"]["speedup"] > 0 and data["board"]["memory_ratio"] > 0
    assert data["board"]["max_abs_diff"] < 1e-5           # one base gives each pair's own diff
    trajectory = data["trajectory"]
    assert trajectory["steps"] == 3 and trajectory["separate_over_trajectory"] > 0
    assert trajectory["z_trajectory"][0] is None, "t = 0 is the base: no diff, nothing to test"
    triage = data["triage"]
    assert triage["fresh_over_adl"] > 0 and triage["cached_seconds"] > 0 and triage["cached_hit"] is True
    assert triage["first_on_base"] == str(tiny_ft_dir)  # no sibling finetune known: the fresh triage is the first
    assert triage["first_on_base_over_adl"] == triage["fresh_over_adl"] == triage["fresh_over_own_adl"]
    assert triage["tui_cached"]["data_paint_s"] > 0 and triage["tui_cached"]["torch_loaded"] is False
    assert data["engine"]["unix"]["median_ms"] > 0 and data["engine"]["stdio"]["median_ms"] > 0
    saved = json.loads((isolated_home / "bench" / "latest.json").read_text())
    assert saved["device"] == data["device"]


def test_cli_passes_options_through_and_refuses_half_a_pair() -> None:
    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)   # typer flattens a one-command app; keep `bench` a subcommand
    runner = CliRunner()
    shown = runner.invoke(app, ["bench", "--help"])
    assert shown.exit_code == 0 and "--quick" in shown.output and "--json" in shown.output
    refused = runner.invoke(app, ["bench", "--base", str(ROOT)])
    assert refused.exit_code == 2


def test_the_triage_rows_run_the_sibling_first_then_the_pair_fresh_then_cached(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On the demo pair the first triage (everything cold) is demo-overfit's; the pair's fresh triage comes after it
    in the same store, over that cold ADL compute (and over its own, whose base pass was cached)."""
    from benchmarks import cached
    from benchmarks.config import Settings

    calls: list[str | None] = []
    walls = iter([300.0, 90.0, 2.0])

    def fake(s: Settings, env: dict[str, str], ft: str | None = None) -> tuple[float, dict[str, object]]:
        calls.append(ft)
        compute = 60.0 if ft else 30.0
        return next(walls), {"timings": {"compute": compute}, "run": "r", "cached": len(calls) == 3}

    monkeypatch.setattr(cached, "_cli_triage", fake)
    rows = cached.triage_rows(Settings(), tmp_path, tmp_path, lambda line: None, lambda *a, **k: {"total_s": 1.0})
    assert calls == ["demo-overfit", None, None]
    assert (rows["first_on_base"], rows["first_on_base_over_adl"]) == ("demo-overfit", 5.0)
    assert (rows["fresh_over_adl"], rows["fresh_over_own_adl"]) == (1.5, 3.0)  # over the cold ADL, over its own
    assert rows["cached_hit"] is True
