"""The workbench against a real engine subprocess (a private stdio child) on the tiny models.

Each test starts the app with `connect("stdio")`, so the engine is a separate process that imports torch,
loads the tiny pair and computes; the app itself stays torch-free. The readout and steering tests need the
engine's `readout.logit_lens` / `steer.generate` ops and are skipped, saying so, in a build without them.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.engine_helpers import until, write_corpus
from tests.support.tui_helpers import mine_in_view, plain, record_notifications
from tui.app import DiffLensApp
from tui.client import EngineClient, connect
from tui.state import JobView, Start
from tui.widgets.heatmap import Heatmap
from tui.widgets.pair_bar import PairBar
from tui.widgets.steering import SteeringPane
from tui.widgets.tokens import TokensPane


def engine_has(method: str) -> bool:
    from engine.ops import load_all

    return method in load_all()


def tiny_run_params(tiny_dir: Path, tiny_ft_dir: Path, corpus: Path, n: int, batch_size: int) -> dict[str, Any]:
    return {"base": str(tiny_dir), "ft": str(tiny_ft_dir), "corpus": str(corpus), "n": n, "k": 4,
            "batch_size": batch_size, "device": "cpu", "dtype": "float32"}


def stdio_app(start: Start) -> DiffLensApp:
    async def factory() -> EngineClient:
        return await connect("stdio")

    return DiffLensApp(client_factory=factory, start=start)


def record_bar_jobs(monkeypatch: pytest.MonkeyPatch) -> list[JobView]:
    """Every job view a pair bar is handed (what it paints)."""
    seen: list[JobView] = []
    original = PairBar.watch_view

    def watch_view(self: PairBar) -> None:
        if self.view.engine.job is not None:
            seen.append(self.view.engine.job)
        original(self)

    monkeypatch.setattr(PairBar, "watch_view", watch_view)
    return seen


async def opened(app: DiffLensApp, timeout: float = 120) -> None:
    """Wait until the workbench shows a run's heatmap."""
    await until(lambda: app.screen.query(PairBar) and app.screen.query_one(PairBar).view.pair is not None,
                timeout, "the run to open")
    await app.workers.wait_for_complete()


@pytest.mark.asyncio
async def test_compute_progress_reaches_the_pair_bar(tiny_dir: Path, tiny_ft_dir: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    jobs = record_bar_jobs(monkeypatch)
    corpus = write_corpus(tmp_path / "c.txt", n=48)
    app = stdio_app(Start(compute=tiny_run_params(tiny_dir, tiny_ft_dir, corpus, n=48, batch_size=4)))
    async with app.run_test(size=(120, 40)) as pilot:
        await opened(app)
        await pilot.pause()
        progressed = [j for j in jobs if j.label == "computing ADL" and j.total and j.done]
        assert len(progressed) >= 2, jobs
        assert progressed[-1].done <= progressed[-1].total
        bar = app.screen.query_one(PairBar)
        assert bar.view.engine.job is None  # finished jobs leave the bar
        assert bar.view.pair is not None and bar.view.pair.k == 4
        assert bar.view.engine.connected and "private engine" in bar.view.engine.description


@pytest.mark.reliability
@pytest.mark.asyncio
async def test_engine_dying_mid_job_notifies_and_reconnect_recovers(tiny_dir: Path, tiny_ft_dir: Path,
                                                                   tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "c.txt", n=120)
    app = stdio_app(Start(compute=tiny_run_params(tiny_dir, tiny_ft_dir, corpus, n=120, batch_size=1)))
    notes = record_notifications(app)
    async with app.run_test(size=(120, 40)) as pilot:
        bar = await until(lambda: app.screen.query(PairBar) and app.screen.query_one(PairBar), 30, "the pair bar")
        await until(lambda: bar.view.engine.job is not None and bar.view.engine.job.done > 0, 120,
                    "the compute to make progress")
        pid = app.link.client.transport.proc.pid  # type: ignore[union-attr]
        os.kill(pid, signal.SIGKILL)  # the engine this test's app started
        await until(lambda: bar.view.engine.lost, 30, "the app to notice")
        await pilot.pause()
        errors = [m for m, kw in notes if kw.get("severity") == "error"]
        assert errors and "ctrl+r" in errors[0]
        assert bar.view.engine.job is None and "ctrl+r reconnects" in plain(bar)
        assert app.is_running
        await pilot.press("ctrl+r")  # a new private engine; the workbench asks for its run again
        await until(lambda: bar.view.engine.connected and bar.view.engine.job is not None, 120,
                    "the compute to restart on the new engine")
        assert not bar.view.engine.lost and app.link.client.transport.proc.pid != pid  # type: ignore[union-attr]
        assert any("reconnected" in m for m, _ in notes)


@pytest.mark.asyncio
async def test_moving_the_cursor_updates_the_token_pane(tiny_dir: Path, tiny_ft_dir: Path, tmp_path: Path) -> None:
    if not engine_has("readout.logit_lens"):
        pytest.skip("this engine build has no readout.logit_lens op yet")
    corpus = write_corpus(tmp_path / "c.txt", n=48)
    app = stdio_app(Start(compute=tiny_run_params(tiny_dir, tiny_ft_dir, corpus, n=48, batch_size=8)))
    async with app.run_test(size=(120, 40)) as pilot:
        await opened(app)
        pane = app.screen.query_one(TokensPane)
        await until(lambda: pane.tokens.lens, 60, "the first logit lens")
        first = (pane.tokens.layer, pane.tokens.pos, pane.tokens.lens)
        await pilot.press("up" if pane.tokens.layer > 0 else "down")
        await until(lambda: pane.tokens.lens and pane.tokens.layer != first[0], 60, "the new cell's tokens")
        assert pane.tokens.pos == first[1]
        assert pane.tokens.lens != first[2]


@pytest.mark.asyncio
async def test_changing_alpha_reruns_steering(tiny_dir: Path, tiny_ft_dir: Path, tmp_path: Path) -> None:
    if not engine_has("steer.generate"):
        pytest.skip("this engine build has no steer.generate op yet")
    corpus = write_corpus(tmp_path / "c.txt", n=48)
    app = stdio_app(Start(compute=tiny_run_params(tiny_dir, tiny_ft_dir, corpus, n=48, batch_size=8)))
    async with app.run_test(size=(120, 40)) as pilot:
        await opened(app)
        pane = app.screen.query_one(SteeringPane)
        await pilot.press("r")
        await until(lambda: pane.steer.rows and not pane.steer.streaming, 120, "steered samples")
        before = [r.steered for r in pane.steer.rows]
        unsteered = [r.unsteered for r in pane.steer.rows]
        alpha = pane.steer.alpha
        for _ in range(8):  # a big push (×√2 each, 16× in all): the tiny model's text must change
            await pilot.press("plus")
        await asyncio.sleep(0)
        await until(lambda: pane.steer.rows and not pane.steer.streaming and abs(pane.steer.alpha / alpha - 16) < 0.01
                    and [r.steered for r in pane.steer.rows] != before, 120, "samples at the new α")
        assert [r.unsteered for r in pane.steer.rows] == unsteered, "the unsteered column does not depend on α"


@pytest.mark.asyncio
async def test_typing_a_text_paints_where_the_models_disagree(tiny_dir: Path, tiny_ft_dir: Path,
                                                               tmp_path: Path) -> None:
    from textual.widgets import Input, Static

    from tui.screens.divergence import DivergenceScreen

    corpus = write_corpus(tmp_path / "c.txt", n=48)
    app = stdio_app(Start(compute=tiny_run_params(tiny_dir, tiny_ft_dir, corpus, n=48, batch_size=8)))
    async with app.run_test(size=(120, 40)) as pilot:
        await opened(app)
        await pilot.press("up")  # the view reads the layer under the heatmap cursor
        layer = app.screen.model.heat.layer
        await pilot.press("d")
        await until(lambda: isinstance(app.screen, DivergenceScreen), 10, "the divergence screen")
        screen = app.screen
        screen.query_one(Input).value = "the cake is a plan of w1 w2 w3"
        await pilot.press("enter")
        painted = screen.query_one("#answer", Static)
        await until(lambda: screen.result is not None, 120, "the painted divergence")
        text = plain(painted)
        assert "finetuned predicts" in text and "cake" in text and "mean KL" in text
        assert screen.result.layer == layer and f"layer {layer}" in text
        await pilot.press("n")
        assert "‖diff‖ 0 …" in plain(painted)
        await pilot.press("e")
        screen.query_one(Input).value = f"@{corpus}"
        await pilot.press("enter")
        await until(lambda: screen.result is not None and screen.result.stats.n_texts == 20, 120,
                    "the corpus snippets")
        assert screen.snippets and len(plain(painted).split("most divergent after")) == 11  # top 10 snippets


@pytest.mark.asyncio
async def test_mining_and_causal_screens_read_the_runs_pair(tiny_dir: Path, tiny_ft_dir: Path,
                                                            tmp_path: Path) -> None:
    from textual.widgets import Input, Static

    from tui.screens.causal import CausalScreen
    from tui.screens.pca import PcaScreen

    corpus = write_corpus(tmp_path / "c.txt", n=48)
    app = stdio_app(Start(compute=tiny_run_params(tiny_dir, tiny_ft_dir, corpus, n=48, batch_size=8)))
    async with app.run_test(size=(140, 40)) as pilot:
        await opened(app)
        mining = await mine_in_view(app, pilot, str(corpus), 6)
        mined = mining.result.to_json()
        assert mined["n_texts"] == 6 and mining.result.tokens and "topics" in mined
        assert "pushed up most" in plain(mining.query_one("#answer", Static))
        await pilot.press("escape")

        await pilot.press("C")
        await until(lambda: isinstance(app.screen, CausalScreen), 10, "the causal screen")
        causal = app.screen
        await pilot.press("r")  # no finetuning texts named and no organism recipe: a clear failure, not a hang
        answer = causal.query_one("#answer", Static)
        await until(lambda: "failed" in plain(answer), 60, "the refusal")
        causal.query_one("#texts", Input).value = str(corpus)
        await pilot.press("x")
        assert causal.mode == "diff"
        await pilot.press("r")
        await until(lambda: causal.result is not None, 120, "the loss table")
        assert causal.result.mode == "diff" and set(causal.result.sets) == {"finetuning", "generic"}
        assert "patching" in plain(answer) and "of that" in plain(answer)
        await pilot.press("x")
        assert causal.mode == "direction"
        await pilot.press("r")
        await until(lambda: causal.result.mode == "direction", 120, "the direction test")
        assert set(causal.result.sets) == {"finetuning", "generic", "chat"} and causal.result.to_json()["controls"]
        assert "random vectors" in plain(answer, width=140) and "z = " in plain(answer, width=140)

        await pilot.press("escape")
        await pilot.press("P")
        await until(lambda: isinstance(app.screen, PcaScreen), 10, "the PCA screen")
        pca = app.screen
        heat = app.screen_stack[-2].model.heat
        assert (pca.at_layer, pca.at_pos) == (heat.layer, heat.pos)
        pca.query_one("#corpus", Input).value = str(corpus)
        pca.query_one("#n", Input).value = "16"
        await pilot.press("enter")
        await until(lambda: pca.result is not None, 120, "the components")
        assert pca.result.n_texts == 16 and pca.result.components[0].tokens
        await pilot.press("j")
        assert pca.selected == 1 and "s steers with the selected" in plain(pca.query_one("#answer", Static), width=140)
        await pilot.press("s")
        await until(lambda: pca.steered is not None, 240, "the component steered")
        assert pca.steered.component is not None and pca.steered.component.index == 1
        assert len(pca.steered.strengths) == 2
        assert "component 1 steered at layer" in plain(pca.query_one("#answer", Static), width=140)


@pytest.mark.asyncio
async def test_amplifying_the_adapter_shows_base_finetune_and_the_scaled_delta(tiny_dir: Path, tmp_path: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from textual.widgets import Input
    from transformers import AutoModelForCausalLM

    from tui.screens.amplify import AmplifyScreen

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_dir),
                           LoraConfig(r=2, target_modules=["down_proj"]))

    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    model.save_pretrained(tmp_path / "adapter")
    corpus = write_corpus(tmp_path / "c.txt", n=16)
    params = tiny_run_params(tiny_dir, tiny_dir, corpus, n=16, batch_size=8) | {"adapter": str(tmp_path / "adapter")}
    app = stdio_app(Start(compute=params))
    async with app.run_test(size=(140, 40)) as pilot:
        await opened(app)
        await pilot.press("A")
        await until(lambda: isinstance(app.screen, AmplifyScreen), 10, "the amplify screen")
        await pilot.press("tab")  # out of the prompt line, which has the focus
        await pilot.press("4")
        await pilot.press("plus")
        assert app.screen.factor == 3.5
        await pilot.press("4")
        assert app.screen.factor == 3.0
        app.screen.query_one(Input).value = "the cake w1"
        await pilot.press("r")
        screen = app.screen
        await until(lambda: screen.result is not None, 120, "the amplified column")
        row = screen.result.rows[0]
        assert row.prompt == "the cake w1" and set(row.amplified) == {"3"}
        painted = plain(screen.query_one("#answer"), width=140)
        assert "×3" in painted and "finetuned" in painted and "the cake w1" in painted
        await pilot.press("m", "m", "l")
        assert (screen.modules, screen.layer_range) == ("mlp", "up to the cursor")
        await pilot.press("r")
        await until(lambda: screen.result.scope.startswith("mlp layers 0–"), 120, "the MLP-only column")
        assert "scaled in mlp layers" in plain(screen.query_one("#answer"), width=140)


@pytest.mark.asyncio
async def test_q_mid_job_quits_at_once_and_reaps_the_private_engine(tiny_dir: Path, tiny_ft_dir: Path,
                                                                     tmp_path: Path) -> None:
    """q while a steering job runs: the engine cancels it and exits by itself (exit code 0, not killed), and
    the app waits for it, so no child is left running or unreaped (a regression guard; it takes well under a
    second here)."""
    corpus = write_corpus(tmp_path / "c.txt", n=48)
    app = stdio_app(Start(compute=tiny_run_params(tiny_dir, tiny_ft_dir, corpus, n=48, batch_size=8)))
    async with app.run_test(size=(120, 40)) as pilot:
        await opened(app)
        proc = app.link.client.transport.proc  # type: ignore[union-attr]
        await pilot.press("r")
        pressed = time.monotonic()
        await pilot.press("q")
    assert time.monotonic() - pressed < 5
    assert proc.returncode == 0
    assert not Path(f"/proc/{proc.pid}").exists()


@pytest.mark.asyncio
async def test_a_triaged_run_opens_with_its_steering_answered_from_the_cache(tiny_dir: Path, tiny_ft_dir: Path,
                                                                             tmp_path: Path) -> None:
    """The workbench opens a triaged run on its calibrated α and the report's samples; the models are gone by
    then, so any steering or calibration not answered from the cache would fail."""
    from engine.adl.request import AdlRequest
    from engine.protocol.methods import TriageSettings
    from engine.triage.pair_triage import triage

    base, ft = tmp_path / "base", tmp_path / "ft"
    shutil.copytree(tiny_dir, base)
    shutil.copytree(tiny_ft_dir, ft)
    report = triage(AdlRequest(base=str(base), ft=str(ft), corpus="self:", n=12, k=3, device="cpu"), TriageSettings())
    shutil.rmtree(base)
    shutil.rmtree(ft)
    app = stdio_app(Start(run=report["run"]))
    async with app.run_test(size=(120, 40)) as pilot:
        await opened(app)
        pane = app.screen.query_one(SteeringPane)
        heat = app.screen.query_one(Heatmap).heat
        cell = report["steering"][str(heat.pos)]
        assert heat.layer == report["layer"] and cell["strength"] > 0, "the tiny pair has no coherent strength here"
        await until(lambda: pane.steer.rows and not pane.steer.streaming, 60, "the report's steering samples")
        assert pane.steer.alpha == cell["strength"] and pane.steer.alpha_from == "calibrated"
        assert [(r.prompt, r.steered, r.unsteered) for r in pane.steer.rows] == \
            [(p["prompt"], p["steered"], p["unsteered"]) for p in cell["prompts"]]
        await until(lambda: app.screen.query_one(TokensPane).tokens.scales, 60, "the report's Patchscope")
        await pilot.press("r")  # the first r: the same samples, no job
        await pilot.pause()
        assert "shown before" in pane.steer.status
        assert [r.steered for r in pane.steer.rows] == [p["steered"] for p in cell["prompts"]]
