"""The workbench TUI driven by Pilot over recorded engine answers (fast, in-process), plus its pure parts.

The real-engine versions of the must-show behaviours live in tests/tui/test_tui_engine.py.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Input

from engine.protocol.methods import AdlCompute, RunParams
from engine.protocol.results import AdlSummary
from tests.support.engine_helpers import until
from tests.support.tui_helpers import (
    RUN,
    HeldReplay,
    make_app,
    plain,
    record_notifications,
    recording,
    settle,
)
from tui.app import DiffLensApp
from tui.client import EngineUnavailable
from tui.client.transport import EXIT_GRACE_S, TERM_GRACE_S, ProcessTransport, closing_words
from tui.commands import WorkbenchCommands
from tui.render.token_text import visible_token
from tui.screens.amplify import AmplifyScreen
from tui.screens.keys import KeysScreen
from tui.screens.start import StartScreen, new_run_form_params, readable_time
from tui.screens.workbench import WorkbenchScreen
from tui.sessions.replay import Recording, ReplayClient
from tui.state import Start, WorkbenchModel, apply_agent_event, apply_summary, move_cursor
from tui.widgets.heatmap import Heatmap, scale_bounds
from tui.widgets.pair_bar import PairBar
from tui.widgets.steering import SteeringPane
from tui.widgets.tokens import TokensPane

# ---- the room rule ------------------------------------------------------------------------------------------


def test_import_tui_app_does_not_import_torch() -> None:
    code = ("import sys, tui.app, tui.sessions.replay\n"
            "bad = [m for m in ('torch', 'transformers', 'nnsight', 'engine.models') if m in sys.modules]\n"
            "print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stdout + out.stderr


# ---- pure parts -----------------------------------------------------------------------------------------------


def test_summary_puts_cursor_on_chosen_layer_peak_and_keeps_pos0_off_scale() -> None:
    model = WorkbenchModel()
    summary = next(c["result"] for c in recording()["calls"] if c["method"] == "adl.summary")
    apply_summary(model, AdlSummary.from_json(summary))
    heat = model.heat
    assert (heat.layer, heat.pos) == (12, 2)  # the recorded layer choice, not the middle layer (8)
    assert heat.chosen_layer == 12 and heat.layer_scores[12] == max(heat.layer_scores)
    assert heat.metric == "rel_norm"  # ‖Δ‖/‖base‖ by default: early layers are not one colour
    lo_rel, hi_rel = scale_bounds(heat)
    early = [v for row in heat.grid[:11] for v in row[1:]]
    assert (max(early) - min(early)) / (hi_rel - lo_rel) > 0.2
    raw = replace(heat, metric="diff_norm")
    _, hi = scale_bounds(raw)
    assert hi < 30 < min(row[0] for row in raw.grid)  # position 0 is shown but does not set the scale
    _, hi0 = scale_bounds(replace(raw, include_pos0=True))
    assert hi0 > 300
    assert move_cursor(heat, 100, 100).row == len(heat.layers) - 1
    assert move_cursor(heat, -100, -100).pos == 0


def test_a_dead_engines_notice_quotes_its_error_not_its_routine_log() -> None:
    log = ["2026-12-02 11:53:31,120 INFO difflens.engine: engine ready on stdio",
           "2026-12-02 11:54:02,001 INFO difflens.engine: loaded gemma-3-270m"]
    assert closing_words(-9, log) == "killed by signal 9"
    assert closing_words(1, [*log, "Traceback (most recent call last):", "MemoryError"]) == (
        "exit code 1; Traceback (most recent call last): | MemoryError")


@pytest.mark.asyncio
async def test_closing_a_child_that_ignores_eof_and_sigterm_kills_and_reaps_it() -> None:
    """A private engine or ssh bridge that lingers after its stdin closes is terminated, then killed, and
    reaped before close returns: no child outlives the event loop that watches it."""
    stubborn = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True);"
                " time.sleep(60)")
    transport = await ProcessTransport.spawn([sys.executable, "-c", stubborn], "stubborn child")
    assert await transport.receive() == "ready\n"
    started = asyncio.get_running_loop().time()
    await transport.close()
    waited = asyncio.get_running_loop().time() - started
    assert transport.proc.returncode == -signal.SIGKILL
    assert EXIT_GRACE_S + TERM_GRACE_S <= waited < EXIT_GRACE_S + TERM_GRACE_S + 5
    assert not Path(f"/proc/{transport.proc.pid}").exists()   # reaped, not a zombie


def test_tokens_are_made_visible() -> None:
    assert visible_token(" bake").plain == "␣bake"
    assert visible_token("\n").plain == "↵"
    assert visible_token("").plain == "∅"
    assert visible_token("\x07").plain == "\\x07"
    assert "magenta" in str(visible_token("<eos>").style)


def test_agent_events_of_the_engine_shape() -> None:
    from tui.state import AgentState

    agent = AgentState()
    agent = apply_agent_event(agent, {"type": "tool_call", "name": "steer", "arguments": {"layer": 9}})
    agent = apply_agent_event(agent, {"type": "token", "text": "x"})
    agent = apply_agent_event(agent, {"type": "hypothesis", "hypothesis": "cakes", "confidence": 0.7,
                                      "evidence": ["lens"]})
    assert agent.log == ("→ steer(layer=9)",)
    assert agent.hypotheses[0].text == "cakes" and agent.hypotheses[0].evidence == ("lens",)


def test_hypothesis_tracking_updates_replace_their_hypothesis_in_place() -> None:
    from tui.state import AgentState

    agent = AgentState()
    for event in ({"id": 1, "hypothesis": "cakes", "status": "active", "evidence": []},
                  {"id": 2, "hypothesis": "ovens", "status": "active", "evidence": []},
                  {"id": 1, "hypothesis": "cakes", "status": "confirmed", "evidence": ["steered text bakes"]}):
        agent = apply_agent_event(agent, {"type": "hypothesis", **event})
    assert [(h.id, h.text, h.status) for h in agent.hypotheses] == [(1, "cakes", "confirmed"), (2, "ovens", "active")]
    assert agent.hypotheses[0].evidence == ("steered text bakes",)


def test_new_run_form_values_become_compute_params() -> None:
    assert new_run_form_params({"base": "a", "ft": " b ", "corpus": "", "n": "20", "k": "5", "seed": ""}) == {
        "base": "a", "ft": "b", "n": 20, "k": 5}


# ---- pilot: the must-show behaviours over a recording ----------------------------------------------------------


@pytest.mark.asyncio
async def test_moving_the_heatmap_cursor_updates_the_token_pane() -> None:
    client = ReplayClient.from_recording(recording())
    app, _ = make_app(client)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        tokens = app.screen.query_one(TokensPane)
        assert tokens.tokens.lens[0][0] == " bake"
        assert "␣bake" in plain(tokens)
        await pilot.press("down")
        await settle(pilot)
        assert (tokens.tokens.layer, tokens.tokens.pos) == (13, 2)
        assert tokens.tokens.lens[0][0] == " bakers"
        assert "␣bakers" in plain(tokens)
        assert app.screen.query_one(Heatmap).heat.layer == 13
        await pilot.press("s")  # the base model's own lens at this cell
        await settle(pilot)
        assert client.asked[-1][1]["source"] == "base"


@pytest.mark.asyncio
async def test_alpha_starts_calibrated_and_steps_by_root_two_back_to_the_shown_result() -> None:
    client = ReplayClient.from_recording(recording())
    app, _ = make_app(client)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        pane = app.screen.query_one(SteeringPane)
        assert pane.steer.alpha == 0.3536 and "‖Δ‖/‖base‖ until calibrated" in plain(pane)  # rel norm 0.33
        await pilot.press("r")  # first use calibrates the cell, then steers at its calibrated α
        await settle(pilot)
        assert [m for m, _ in client.asked if m.startswith("steer.")] == ["steer.calibrate", "steer.generate"]
        assert pane.steer.alpha == 2.5 and "calibrated ◆" in plain(pane)
        assert pane.steer.rows[0].steered.startswith("Cake cake bake")
        await pilot.press("plus")
        await settle(pilot)
        steer_calls = [p for m, p in client.asked if m == "steer.generate"]
        assert [c["strengths"] for c in steer_calls] == [[2.5], [3.536]]
        assert steer_calls[1]["prompts"] == [r.prompt for r in pane.steer.rows]  # the prompts stay the same
        assert "frozen butter" in pane.steer.rows[0].steered and "α 3.536" in plain(pane)
        await pilot.press("minus")  # back to a (cell, α) already shown: painted at once, no new job
        await settle(pilot)
        assert len([m for m, _ in client.asked if m == "steer.generate"]) == 2
        assert pane.steer.alpha == 2.5 and pane.steer.rows[0].steered.startswith("Cake cake bake")
        await pilot.press("down", "up")  # off the cell and back: its α and samples come back with it
        await settle(pilot)
        assert pane.steer.alpha == 2.5 and pane.steer.rows[0].steered.startswith("Cake cake bake")
        assert len([m for m, _ in client.asked if m == "steer.generate"]) == 2


class StreamsThenHolds(ReplayClient[Recording]):
    """`steer.generate` streams `partials` (shaped as the engine's `steer_cells` sends them) and then holds its
    answer until `gate` is set."""

    def __init__(self, data: dict[str, Any], partials: list[dict[str, Any]]) -> None:
        book = Recording(data)
        super().__init__(book, book.description)
        self.partials = partials
        self.gate = asyncio.Event()

    async def run_job(self, method: str, params: dict[str, Any] | None = None,
                      on_event: Any = None) -> dict[str, Any]:
        if method == "steer.generate" and on_event is not None:
            for event in self.partials:
                on_event({"job": "j1", "type": "partial", **event})
            await self.gate.wait()
        return await super().run_job(method, params, on_event)


@pytest.mark.asyncio
async def test_the_steered_column_streams_beside_the_unsteered_one() -> None:
    prompts = ["Tell me about your weekend.", "Write a short poem."]
    # the first decoding step of one cell, as the engine streams it: the unsteered rows (0, 1) come first in the
    # batch, the steered ones (2, 3) after them; `line` pairs each steered text with its unsteered twin
    partials = [{"row": row, "line": row % 2, "pos": 1 if row > 1 else -1, "prompt": prompts[row % 2],
                 "strength": 2.5, "column": "steered" if row > 1 else "unsteered", "text": text}
                for row, text in enumerate(["I went", "Roses are", "Cake cake", "Ovens are"])]
    client = StreamsThenHolds(recording(), partials)
    app, _ = make_app(client)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        pane = app.screen.query_one(SteeringPane)
        await pilot.press("r")
        await until(lambda: pane.steer.streaming and len(pane.steer.rows) >= 2 and pane.steer.rows[1].steered,
                    10, "streamed samples")
        assert [(r.prompt, r.steered, r.unsteered) for r in pane.steer.rows] == \
            [(prompts[0], "Cake cake", "I went"), (prompts[1], "Ovens are", "Roses are")]
        assert "Cake cake" in plain(pane) and "I went" in plain(pane)
        client.gate.set()
        await until(lambda: not pane.steer.streaming, 10, "the finished samples")
        assert pane.steer.rows[0].steered.startswith("Cake cake bake")


@pytest.mark.asyncio
async def test_a_new_steering_job_cancels_the_one_it_replaces() -> None:
    client = HeldReplay(recording(), {"steer.generate": None})
    app, _ = make_app(client)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("c")
        await until(lambda: [p["strengths"] for p in client.started] == [[2.5]], 5, "the first steering job")
        await pilot.press("plus")
        await until(lambda: [p["strengths"] for p in client.cancelled] == [[2.5]], 5, "the superseded job cancelled")
        client.gate.set()
        await settle(pilot)
        assert app.screen.query_one(SteeringPane).steer.alpha == 3.536


@pytest.mark.asyncio
async def test_calibration_marks_alpha_and_reruns() -> None:
    client = ReplayClient.from_recording(recording())
    app, _ = make_app(client)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("c")
        await settle(pilot)
        pane = app.screen.query_one(SteeringPane)
        assert pane.steer.calibrated == 2.5 and pane.steer.alpha == 2.5
        assert "α 2.5  calibrated ◆" in plain(pane)
        assert pane.steer.rows[0].steered.startswith("Cake cake bake")


@pytest.mark.asyncio
async def test_amplify_focuses_its_prompt_so_letters_are_typed_not_keys() -> None:
    client = ReplayClient.from_recording(recording())
    app, _ = make_app(client)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("A")
        await settle(pilot)
        assert isinstance(app.screen, AmplifyScreen)
        prompt = app.screen.query_one("#prompt", Input)
        assert app.focused is prompt
        await pilot.press("r", "m", "4")
        await settle(pilot)
        assert prompt.value == "rm4" and app.screen.factor == 2.0
        assert not any(m == "lens.amplify" for m, _ in client.asked)


@pytest.mark.asyncio
async def test_calibration_and_patchscope_name_their_judge() -> None:
    data = recording()
    for call in data["calls"]:
        if call["method"] in ("steer.calibrate", "readout.patchscope"):
            call["result"] |= {"judge": "openai:judge-m", "ungraded": 3}
    app, _ = make_app(ReplayClient.from_recording(data))
    notes = record_notifications(app)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("c")
        await settle(pilot)
        assert any("judged by openai:judge-m; 3 samples ungraded" in message for message, _ in notes)
        await pilot.press("p")
        await settle(pilot)
        assert "· openai:judge-m" in plain(app.screen.query_one(TokensPane))


@pytest.mark.asyncio
async def test_job_progress_reaches_the_pair_bar() -> None:
    client = HeldReplay(recording(), {"adl.compute": {"done": 3, "total": 10, "message": "batches", "elapsed_s": 3.0,
                                                     "eta_s": 7.0}})
    app, _ = make_app(client, Start.demo())
    async with app.run_test(size=(120, 30)) as pilot:
        bar = await until(lambda: app.screen.query(PairBar) and app.screen.query_one(PairBar), 10, "the pair bar")
        await until(lambda: bar.view.engine.job is not None and bar.view.engine.job.done, 10,
                    "the compute job's progress in the pair bar")
        job = bar.view.engine.job
        assert job is not None and (job.label, job.done, job.total) == ("computing ADL", 3, 10)
        text = plain(bar)
        assert "3/10" in text and "ETA 7s" in text and "x cancels" in text
        client.gate.set()
        await settle(pilot)
        assert bar.view.engine.job is None
        assert bar.view.pair is not None and bar.view.pair.run == RUN  # the computed run opened
        assert ("adl.compute", AdlCompute(base="gemma-3-270m", ft="demo").to_json()) in client.asked


@pytest.mark.asyncio
async def test_cancel_key_stops_the_running_job() -> None:
    client = HeldReplay(recording(), {"adl.compute": {"done": 3, "total": 10, "message": "batches", "elapsed_s": 3.0,
                                                     "eta_s": 7.0}})
    app, _ = make_app(client, Start.demo())
    notes = record_notifications(app)
    async with app.run_test(size=(120, 30)) as pilot:
        await until(lambda: app.screen.query(PairBar) and app.screen.query_one(PairBar).view.engine.job, 10,
                    "the compute job")
        await pilot.press("x")
        await settle(pilot)
        assert app.screen.query_one(PairBar).view.engine.job is None
        assert any("cancelled computing ADL" in m for m, _ in notes)
        assert "did not finish" in app.screen.query_one(Heatmap).heat.status


class DyingClient(ReplayClient[Recording]):
    """An engine that dies in the middle of a steering job (after one progress event)."""

    async def run_job(self, method: str, params: dict[str, Any], on_event: Any = None) -> dict[str, Any]:
        if method == "steer.generate":
            on_event({"job": "j1", "type": "progress", "done": 1, "total": 3, "message": "", "elapsed_s": 1,
                      "eta_s": 2})
            await asyncio.sleep(0.05)
            raise EngineUnavailable("the engine at private engine (stdio) closed the connection (exit code -9)")
        return await super().run_job(method, params, on_event)


@pytest.mark.reliability
@pytest.mark.asyncio
async def test_engine_death_mid_job_notifies_and_offers_reconnect() -> None:
    dying = DyingClient.from_recording(recording())
    healthy = ReplayClient.from_recording(recording())
    clients = [dying, healthy]

    async def factory() -> ReplayClient:
        return clients.pop(0)

    app = DiffLensApp(client_factory=factory, start=Start(run=RUN))
    notes = record_notifications(app)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        await pilot.press("right", "r")
        await settle(pilot)
        lost = [(m, kw) for m, kw in notes if kw.get("severity") == "error"]
        assert lost and "closed the connection" in lost[0][0] and "ctrl+r" in lost[0][0]
        bar = app.screen.query_one(PairBar)
        assert bar.view.engine.lost and "ctrl+r reconnects" in plain(bar)
        assert bar.view.engine.job is None
        assert "stopped" in app.screen.query_one(SteeringPane).steer.status
        hits = [hit.text async for hit in WorkbenchCommands(app.screen).discover()]
        assert "Reconnect" in hits
        await pilot.press("ctrl+r")
        await settle(pilot)
        assert dying.closed
        assert not bar.view.engine.lost and bar.view.engine.connected
        assert any("reconnected" in m for m, _ in notes)
        # the open run is reloaded on the new engine
        assert ("adl.summary", RunParams(run=RUN).to_json()) in healthy.asked
        assert (app.screen.query_one(Heatmap).heat.layer, app.screen.query_one(Heatmap).heat.pos) == (12, 3)
        await pilot.press("r")
        await settle(pilot)
        assert "frozen butter" in app.screen.query_one(SteeringPane).steer.rows[0].steered


@pytest.mark.reliability
@pytest.mark.asyncio
async def test_engine_that_cannot_start_is_a_notification_not_a_crash() -> None:
    async def factory() -> ReplayClient:
        raise EngineUnavailable("no engine answers on /run/difflens.sock")

    app = DiffLensApp(client_factory=factory, start=Start())
    notes = record_notifications(app)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, StartScreen)
        assert any("no engine answers" in m for m, _ in notes)
        assert "engine lost" in plain(app.screen.query_one(PairBar))


@pytest.mark.reliability
@pytest.mark.asyncio
async def test_failed_calls_are_notifications() -> None:
    data = recording()
    data["calls"].append({"method": "readout.logit_lens", "params": {"layer": 13, "pos": 2, "source": "diff"},
                          "error": "layer 13 is not cached"})
    app, _ = make_app(ReplayClient.from_recording(data))
    notes = record_notifications(app)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("down")
        await settle(pilot)
        assert ("layer 13 is not cached", "readout.logit_lens") in [(m, kw.get("title")) for m, kw in notes]
        assert app.is_running
        await pilot.press("up")
        await settle(pilot)
        assert app.screen.query_one(TokensPane).tokens.lens[0][0] == " bake"


@pytest.mark.asyncio
async def test_patchscope_side_by_side_with_selectable_scale() -> None:
    app, _ = make_app(ReplayClient.from_recording(recording()))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("p")
        await settle(pilot)
        pane = app.screen.query_one(TokensPane)
        assert pane.tokens.best_scale == 1.2 and "scale 1.2 (best)" in plain(pane)
        await pilot.press("right_square_bracket")
        assert "scale 1.5 · 5 of 8 scales" in plain(pane)
        text = plain(pane)
        assert text.index("lens of diff") < text.index("Patchscope")  # one row: lens left, Patchscope right
        await pilot.press("down")  # Patchscope now follows the cursor
        await settle(pilot)
        assert pane.tokens.layer == 13 and pane.tokens.scales


@pytest.mark.asyncio
async def test_negative_patchscope_scales_and_the_lens_head_render() -> None:
    data = recording()
    for call in data["calls"]:
        if call["method"] == "readout.logit_lens":
            call["result"]["head"] = "ft"
        if call["method"] == "readout.patchscope":
            call["result"] |= {"best_scale": -1.2, "best_by_sign": {"+": 1.2, "-": -1.2}, "selected": [" oven"],
                               "scales": [{"scale": -1.2, "tokens": [[" oven", 0.2]]},
                                          {"scale": 1.2, "tokens": [[" the", 0.1]]}]}
    app, _ = make_app(ReplayClient.from_recording(data))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("p")
        await settle(pilot)
        pane = app.screen.query_one(TokensPane)
        assert "scale -1.2 (best)" in plain(pane) and "oven" in plain(pane) and "lens of diff · ft head" in plain(pane)
        await pilot.press("right_square_bracket")
        assert "scale 1.2 · 2 of 2 scales" in plain(pane)


@pytest.mark.asyncio
async def test_agent_pane_streams_hypotheses_tool_calls_and_grade() -> None:
    app, _ = make_app(ReplayClient.from_recording(recording()))
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        await pilot.press("g")
        await settle(pilot)
        agent = app.screen.query_one("#agent").agent
        assert [round(h.confidence or 0, 2) for h in agent.hypotheses] == [0.55, 0.85]
        assert agent.grade.startswith("5/5")
        assert any(line.startswith("→ logit_lens(") for line in agent.log)
        text = plain(app.screen.query_one("#agent"))
        assert "450°F" in text and "↳ steering α 2" in text


@pytest.mark.asyncio
async def test_agent_without_llm_says_how_to_configure() -> None:
    data = recording()
    data["calls"] = [c for c in data["calls"] if c["method"] != "agent.run"]
    data["calls"].append({"method": "agent.run", "params": {}, "error": "no LLM configured — set DIFFLENS_LLM_MODEL"})
    data["calls"].append({"method": "agent.keywords", "params": {},
                          "result": {"summary": "The difference points to: cake, bake, butter."}})
    app, _ = make_app(ReplayClient.from_recording(data))
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        assert "needs an LLM" in plain(app.screen.query_one("#agent"))
        assert app.screen.query_one("#agent-box").size.width < 40  # idle: steering keeps the width
        await pilot.press("g")
        await settle(pilot)
        text = plain(app.screen.query_one("#agent"))
        assert "failed" in text and "OPENAI_API_KEY" in text and "--llm local:SPEC" in text
        assert "offline keyword hypothesis: The difference points to: cake" in text
        assert f"difflens agent {RUN} --keywords" in text


@pytest.mark.asyncio
async def test_start_screen_lists_runs_and_sessions_and_opens_a_run(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIFFLENS_SESSIONS_DIR", str(tmp_path))  # no shipped session files: an empty list
    client = ReplayClient.from_recording(recording())
    app, _ = make_app(client, Start())
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, StartScreen)
        table = app.screen.query_one("#runs")
        assert table.row_count == 2
        assert "no saved sessions" in str(app.screen.query_one("#sessions").get_row_at(0)[0])
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, WorkbenchScreen)
        assert app.screen.query_one(PairBar).view.pair.run == RUN
        assert "connecting" not in plain(app.screen.query_one(PairBar))  # the bar knows the engine at once
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, StartScreen)
        assert str(table.get_row_at(0)[-1]) == "2025-11-25 16:00"  # cells from outside are plain Text
        assert readable_time(1796189103.569).startswith("2026-")


@pytest.mark.asyncio
async def test_palette_lists_every_action_and_keys_help_opens() -> None:
    app, _ = make_app(ReplayClient.from_recording(recording()))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        titles = [hit.text async for hit in WorkbenchCommands(app.screen).discover()]
        for title in ("Metric", "Steer", "α+", "Set α", "Calibrate α", "Edit prompt", "Patchscope", "Run agent",
                      "Cancel job", "Reconnect", "Keys", "Runs and sessions", "Pos 0 in scale"):
            assert title in titles
        await pilot.press("m")
        assert app.screen.query_one(Heatmap).heat.metric == "diff_norm"  # from the default diff / base norm
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, KeysScreen)
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, WorkbenchScreen)


@pytest.mark.asyncio
async def test_prompt_edit_reruns_with_the_new_prompt() -> None:
    client = ReplayClient.from_recording(recording())
    app, _ = make_app(client)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("r")
        await settle(pilot)
        await pilot.press("e")
        await pilot.pause()
        await pilot.press("end", *"Hi", "enter")  # end: keep the text (it is selected on focus) and append
        await settle(pilot)
        prompts = [p for m, p in client.asked if m == "steer.generate"][-1]["prompts"]
        assert prompts[0].endswith("Hi") and len(prompts) == 3
