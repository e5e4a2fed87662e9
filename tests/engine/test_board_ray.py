"""Boards on a local Ray cluster (2 CPU workers): the serial board's scores, every result in the driver's
store under the same keys, re-runs skipped, and a dead worker's group retried once, then reported."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from engine.jobs import JobContext
from engine.ops.board_ops import triage_board
from engine.triage import board as board_module
from store import results
from tests.support.board_pairs import FAST, three_pairs

ray = pytest.importorskip("ray", reason="ray is not installed (pip install -e '.[cluster]')")
MARKER = "DIFFLENS_TEST_RAY_MARKER"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Any:
    os.environ[MARKER] = str(tmp_path_factory.mktemp("ray") / "died-once")  # the workers inherit it
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
    os.environ.pop(MARKER)


def die_once(planned: list[dict[str, Any]], llm: str | None, reports: bool) -> list[dict[str, Any]]:
    """A worker that dies the first time it is given a group (as an out-of-memory kill would)."""
    marker = Path(os.environ[MARKER])
    if not marker.exists():
        marker.touch()
        os._exit(1)
    return board_module.triage_group(planned, llm, reports)


def always_die(planned: list[dict[str, Any]], llm: str | None, reports: bool) -> list[dict[str, Any]]:
    os._exit(1)


def test_ray_board_equals_the_serial_board_in_the_drivers_store(cluster: Any, planted: dict[str, str],
                                                                tiny_dir: Path, tiny_ft_dir: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DIFFLENS_LLM_MODEL", raising=False)
    pairs = [*three_pairs(planted), {"name": "other", "base": str(tiny_dir), "ft": str(tiny_ft_dir)}]
    events: list[dict[str, Any]] = []
    on_ray = triage_board({"pairs": pairs, "settings": FAST, "ray": "auto"}, JobContext(emit=events.append))
    assert all(p["error"] is None and not p["skipped"] for p in on_ray["pairs"]), on_ray["pairs"]
    assert sum("Ray)" in e.get("message", "") for e in events if e["type"] == "progress") == 2  # two base groups
    stored_runs = {r["key"] for r in results.list_results("adl")}
    assert {p["run"] for p in on_ray["pairs"]} <= stored_runs  # written here, by the driver
    assert results.list_results("adl-base")  # the workers' base passes came back too
    again = triage_board({"pairs": pairs, "settings": FAST, "ray": "auto"}, JobContext())
    assert again["skipped"] == 4
    results.connect().execute("delete from results")
    results.connect().execute("delete from board_pairs")
    serial = triage_board({"pairs": pairs, "settings": FAST}, JobContext())
    assert [(p["name"], p["score"], p["run"]) for p in serial["pairs"]] == \
        [(p["name"], p["score"], p["run"]) for p in on_ray["pairs"]]


def test_a_dead_workers_group_is_retried_once_then_reported(cluster: Any, planted: dict[str, str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DIFFLENS_LLM_MODEL", raising=False)
    pairs = three_pairs(planted)[:2]
    monkeypatch.setattr(board_module, "triage_group", die_once)
    retried = triage_board({"pairs": pairs, "settings": FAST, "ray": "auto"}, JobContext())
    assert Path(os.environ[MARKER]).exists()  # the first attempt died
    assert all(p["error"] is None and p["score"] is not None for p in retried["pairs"])
    monkeypatch.setattr(board_module, "triage_group", always_die)
    failed = triage_board({"pairs": [*pairs, {"name": "mlp2", "base": planted["base"], "ft": planted["base"],
                                              "adapter": planted["attn"], "description": "other"}],
                           "settings": FAST, "ray": "auto"}, JobContext())
    by_name = {p["name"]: p for p in failed["pairs"]}
    assert by_name["same"]["skipped"] and by_name["mlp"]["skipped"]  # finished above: never sent
    assert "worker died" in by_name["mlp2"]["error"] and by_name["mlp2"]["score"] is None
