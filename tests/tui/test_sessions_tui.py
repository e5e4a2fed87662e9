"""Sessions in the workbench: recorded as the user works, replayed with torch unimportable, survive a kill.

The replay runs in a subprocess (`tests/support/session_child.py`) whose import system refuses torch, transformers
and nnsight, and must paint the very panes the recording app showed.
"""

from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from store import bundle, imported, results, sessions
from store.paths import db_path
from tests.support.engine_helpers import until, write_corpus
from tests.support.session_child import RECORDING, RUN, SIZE, dump, settle
from tests.support.tui_helpers import mine_in_view
from tui.app import DiffLensApp
from tui.client import EngineClient, connect
from tui.screens.session import SessionWorkbench
from tui.sessions.client import SessionTap
from tui.sessions.compare import compare_table
from tui.sessions.replay import ReplayClient
from tui.sessions.rerun import rerun
from tui.sessions.source import load_source
from tui.state import Start
from tui.widgets.pair_bar import PairBar
from tui.widgets.steering import SteeringPane
from tui.widgets.tokens import TokensPane

ROOT = Path(__file__).resolve().parents[2]


def child(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tests.support.session_child", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT)})


def replayed(ref: str) -> dict[str, Any]:
    """The panes a torch-less replay of `ref` paints."""
    proc = child("replay", ref)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("DUMP ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    return json.loads(lines[-1][5:])


def engine_has(method: str) -> bool:
    from engine.ops import load_all

    return method in load_all()


@pytest.mark.asyncio
async def test_session_over_every_pane_replays_identically_without_torch() -> None:
    """Lens, Patchscope, scale, metric, α, steering and the agent: recorded, then replayed with torch blocked."""
    async def factory() -> ReplayClient:
        return ReplayClient.from_file(RECORDING)

    app = DiffLensApp(client_factory=factory, start=Start(run=RUN), session="every pane")
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        for key in ("down", "up", "p", "right_square_bracket", "m", "r", "plus", "g", "left", "right", "s"):
            await pilot.press(key)
            await settle(app, pilot)
        await app.action_quit()
        shown = dump(app)
    assert "SteerRow(prompt=" in shown["model"]["steer"] and "scales=((" in shown["model"]["tokens"]
    done = sessions.actions(sessions.get("every pane").id)
    methods = {a["method"] for a in done}
    assert {"adl.summary", "readout.logit_lens", "readout.patchscope", "steer.generate", "agent.run"} <= methods
    again = replayed("every pane")
    assert again["torch_loaded"] == []
    assert "no engine" in again["description"]
    assert again["model"] == shown["model"]
    assert again["texts"] == shown["texts"]


@pytest.mark.asyncio
async def test_replay_keeps_a_recorded_cells_steering_and_says_what_was_never_recorded() -> None:
    """Off the recorded cell and back: its steering comes back; an unrecorded cell says "not recorded"."""
    async def factory() -> ReplayClient:
        return ReplayClient.from_file(RECORDING)

    app = DiffLensApp(client_factory=factory, start=Start(run=RUN), session="steered cell")
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        for key in ("p", "r"):
            await pilot.press(key)
            await settle(app, pilot)
        await app.action_quit()
    replay = DiffLensApp(client_factory=None, session=SessionTap(source=load_source("steered cell")))
    async with replay.run_test(size=SIZE) as pilot:
        await settle(replay, pilot)
        steering = replay.screen.query_one(SteeringPane)
        tokens = replay.screen.query_one(TokensPane)
        recorded = steering.steer.rows
        assert recorded and recorded[0].steered.startswith("Cake cake bake") and steering.steer.alpha == 2.5
        await pilot.press("right")
        await settle(replay, pilot)
        assert tokens.tokens.patch_status == "not recorded in this session"
        assert tokens.tokens.lens_status == "not recorded in this session"
        await pilot.press("left")
        await settle(replay, pilot)
        assert steering.steer.rows == recorded and steering.steer.alpha == 2.5
        assert tokens.tokens.scales


@pytest.mark.asyncio
async def test_session_recorded_through_a_real_engine_replays_reruns_and_round_trips(
        tiny_dir: Path, tiny_ft_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Record through a private engine; replay torch-less; rerun on the swapped pair; export → import clean."""
    corpus = write_corpus(tmp_path / "c.txt", n=24)
    params = {"base": str(tiny_dir), "ft": str(tiny_ft_dir), "corpus": str(corpus), "n": 24, "k": 4,
              "batch_size": 8, "device": "cpu", "dtype": "float32"}

    async def factory() -> EngineClient:
        return await connect("stdio")

    app = DiffLensApp(client_factory=factory, start=Start(compute=params), session="tiny analysis")
    keys = ["down", "right", "m", "0"]
    if engine_has("readout.logit_lens"):
        keys.append("s")
    if engine_has("steer.generate"):
        keys.append("r")
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: app.screen.query(PairBar) and app.screen.query_one(PairBar).view.pair, 120, "the run")
        await settle(app, pilot)
        for key in keys:
            await pilot.press(key)
            await settle(app, pilot)
        if engine_has("steer.generate"):
            pane = app.screen.query_one(SteeringPane)
            await until(lambda: pane.steer.rows and not pane.steer.streaming, 120, "steered samples")
        if engine_has("readout.logit_lens"):
            await until(lambda: app.screen.query_one(TokensPane).tokens.lens, 60, "the logit lens")
        await mine_in_view(app, pilot, str(corpus), 4)  # a lens view's question is part of the analysis too
        await pilot.press("escape")
        await settle(app, pilot)
        await app.action_quit()
        shown = dump(app)
    session = sessions.get("tiny analysis")
    assert session.run and session.run in {k for a in sessions.actions(session.id) for k in a["refs"]}
    methods = {a["method"] for a in sessions.actions(session.id)}
    expected = {"adl.compute", "adl.summary", "lens.mine"} | {m for m in ("readout.logit_lens", "steer.generate")
                                                             if engine_has(m)}
    assert expected <= methods
    again = replayed("tiny analysis")
    assert again["torch_loaded"] == []
    assert again["model"] == shown["model"]
    assert again["texts"] == shown["texts"]

    new, steps = await rerun(load_source("tiny analysis"), str(tiny_ft_dir), str(tiny_dir),
                             client=await connect("stdio"))
    assert new.run and new.run != session.run and new.origin == session.id
    assert [s.method for s in steps][:2] == ["adl.compute", "adl.summary"] and all(s.new for s in steps)
    assert steps[1].new["base"] != steps[1].old["base"]
    text = io.StringIO()
    Console(file=text, width=200).print(compare_table(steps, "old", "new"))
    assert "adl.summary" in text.getvalue() and "lens.mine" in text.getvalue()
    mined = next(s for s in steps if s.method == "lens.mine")
    assert mined.params["run"] == new.run and mined.new["n_texts"] == 4

    path = bundle.export_session("tiny analysis", tmp_path / "shared")
    keys = {k for a in sessions.actions(session.id) for k in a["refs"]}
    rows = {k: results.row(k) for k in keys}
    files = {k: results.file_for(k).read_bytes() for k in keys}
    monkeypatch.setenv("DIFFLENS_HOME", str(tmp_path / "clean"))
    bundle.import_bundle(path)
    assert all(results.row(k) is None for k in keys)  # kept apart: never an answer to a new computation
    kept = {r["key"]: r for r in imported.rows(session.id)}
    assert {k: imported.as_result_row(r) for k, r in kept.items()} == rows
    assert {k: imported.file_for(r["sha256"]).read_bytes() for k, r in kept.items()} == files
    assert replayed("tiny analysis")["texts"] == shown["texts"]


@pytest.mark.asyncio
async def test_opening_a_session_from_the_start_screen_restores_its_view() -> None:
    async def factory() -> ReplayClient:
        return ReplayClient.from_file(RECORDING)

    app = DiffLensApp(client_factory=factory, start=Start(run=RUN), session="to reopen")
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        for key in ("down", "down", "r"):
            await pilot.press(key)
            await settle(app, pilot)
        await app.action_quit()
        shown = dump(app)
    app = DiffLensApp(client_factory=factory, start=Start())
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.screen.query_one("#sessions").focus()
        await pilot.press("enter")
        await settle(app, pilot)
        assert isinstance(app.screen, SessionWorkbench)
        assert dump(app) == shown
        assert app.sessions.recorder is not None and app.sessions.recorder.session.name == "to reopen"


@pytest.mark.reliability
def test_killing_the_tui_loses_at_most_the_action_in_flight() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "tests.support.session_child", "record", "killed"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    announced: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while len(announced) < 8 and time.monotonic() < deadline:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            if not line:
                break
            if line.startswith("DONE "):
                announced.append(line.split()[1])
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # the child this test started
        proc.wait()
    assert len(announced) >= 8, proc.stderr.read()[-2000:]  # type: ignore[union-attr]
    with sqlite3.connect(db_path()) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    session = sessions.get("killed")
    rows = sessions.actions(session.id, done_only=False)
    by_id = {r["id"]: r for r in rows}
    assert all(by_id[a]["status"] == "done" and by_id[a]["result"] is not None for a in announced)
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))  # nothing lost in between
    assert sum(r["status"] == "running" for r in rows) <= 1  # only the action in flight
    assert len([r for r in rows if r["status"] == "done"]) >= len(announced)


@pytest.mark.asyncio
async def test_save_as_keeps_what_is_on_screen_and_notes_are_committed() -> None:
    async def factory() -> ReplayClient:
        return ReplayClient.from_file(RECORDING)

    app = DiffLensApp(client_factory=factory, start=Start(run=RUN))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("ctrl+n")  # no session yet: a warning, nothing written
        await settle(app, pilot)
        assert sessions.list_sessions() == []
        await pilot.press("down", "r")
        await settle(app, pilot)
        await pilot.press("ctrl+s", *"named later", "enter")
        await settle(app, pilot)
        await pilot.press("ctrl+n", *"layer 13 reads cake", "enter")
        await settle(app, pilot)
        await app.action_quit()
        shown = dump(app)
    session = sessions.get("named later")
    assert [n["text"] for n in sessions.notes(session.id)] == ["layer 13 reads cake"]
    assert sessions.notes(session.id)[0]["cell"]["layer"] == 13
    methods = {a["method"] for a in sessions.actions(session.id)}
    assert {"adl.summary", "readout.logit_lens", "steer.generate"} <= methods
    assert replayed("named later")["texts"] == shown["texts"]
