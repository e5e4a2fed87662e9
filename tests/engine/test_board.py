"""The triage board: ranking tiny planted pairs, skipping finished ones, reporting a broken one, board files,
HTML escaping, the CLI, and the demo report rendered by headless Chromium."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest

from engine.errors import UserError
from engine.jobs import JobContext
from engine.ops.board_ops import triage_board
from engine.ops.catalog_ops import triage_boards
from engine.protocol.methods import TriageSettings
from engine.protocol.report_results import TriageBoardResult
from engine.triage import board as board_module
from engine.triage.order import count_loads, plan
from engine.triage.pairs import PairEntry, load_board_file
from engine.triage.planned import plan_pair
from engine.triage.score import trace_strength
from tests.support.board_pairs import FAST, three_pairs
from tui.render.report_html import index_page, pair_page, write_report

# recorded once from `difflens triage --base gemma-3-270m --ft demo --json` (CPU; the mixed demo, read at the layer
# the criterion chose); Patchscope at the report layer replaced by `difflens tokens RUN --layer 15 --pos P --method
# patchscope --json` from the same run's cache (every scale, top 8 tokens each), written compact
DEMO_REPORT = Path(__file__).resolve().parents[1] / "data" / "demo_triage.json"
HOSTILE = '<script>alert("x")</script>'


def test_identical_pair_ranks_last_and_a_rerun_skips_every_pair(planted: dict[str, str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DIFFLENS_LLM_MODEL", raising=False)
    from engine.models import cache

    loads: list[str] = []
    real_load = cache.load_model
    monkeypatch.setattr(cache, "load_model", lambda spec, placement: loads.append(spec.label()) or
                        real_load(spec, placement))
    triaged: list[str] = []
    real_triage = board_module.triage
    monkeypatch.setattr(board_module, "triage", lambda request, options, ctx: triaged.append(request.ft) or
                        real_triage(request, options, ctx))
    events: list[dict[str, Any]] = []
    params = {"pairs": three_pairs(planted), "settings": FAST}

    first = triage_board(params, JobContext(emit=events.append))
    names = [p["name"] for p in first["pairs"]]
    assert names[-1] == "same" and set(names) == {"same", "mlp", "attn"}
    scores = {p["name"]: p["score"] for p in first["pairs"]}
    assert scores["same"] < 1e-6 and min(scores["mlp"], scores["attn"]) > 0.05, scores
    assert all(p["error"] is None and p["run"] and p["hypothesis"] for p in first["pairs"])
    assert first["pairs"][-1]["hypothesis"].startswith("no readable trace: the two models")
    assert first["plan"]["order"][0] == "same" and first["plan"]["model_loads"] == 1
    assert len(loads) == 1 and len(triaged) == 3  # the base weights once; both adapters attach to them
    progress = [e["message"] for e in events if e["type"] == "progress"]
    assert any(m.startswith("mlp (2/3)") for m in progress) and progress[-1] == "done"

    second = triage_board(params, JobContext())
    assert len(triaged) == 3 and len(loads) == 1  # nothing recomputed, nothing loaded
    assert second["skipped"] == 3 and all(p["skipped"] for p in second["pairs"])
    assert [(p["name"], p["score"], p["hypothesis"]) for p in second["pairs"]] == \
        [(p["name"], p["score"], p["hypothesis"]) for p in first["pairs"]]
    stored = triage_boards({}, JobContext())["board"]
    assert stored["status"] == "done" and [p["name"] for p in stored["pairs"]] == names


def test_a_missing_model_is_reported_while_the_others_complete(planted: dict[str, str], tmp_path: Path) -> None:
    gone = {"name": "gone", "base": planted["base"], "ft": str(tmp_path / "no-such-model")}
    pairs = [gone, *three_pairs(planted)[:2]]
    result = triage_board({"pairs": pairs, "settings": FAST}, JobContext())
    by_name = {p["name"]: p for p in result["pairs"]}
    assert "does not exist" in by_name["gone"]["error"] and "\n" not in by_name["gone"]["error"]
    assert by_name["gone"]["score"] is None and result["pairs"][-1]["name"] == "gone"
    assert by_name["mlp"]["error"] is None and by_name["mlp"]["score"] > by_name["same"]["score"] == 0
    rerun = triage_board({"pairs": pairs, "settings": FAST}, JobContext())
    assert {p["name"]: p["skipped"] for p in rerun["pairs"]} == {"gone": False, "mlp": True, "same": True}


def test_csv_and_yaml_parse_to_the_same_pairs(tmp_path: Path) -> None:
    (tmp_path / "models" / "m").mkdir(parents=True)
    (tmp_path / "pairs.csv").write_text("name,base,ft,adapter,description\n"
                                        "cake,gemma-3-270m,demo,,\"bakes, cakes\"\n"
                                        "local,./models/m,models/m,,\n")
    (tmp_path / "pairs.yaml").write_text("settings: {n: 64, steer: false}\npairs:\n"
                                         "  - {name: cake, base: gemma-3-270m, ft: demo, description: 'bakes, cakes'}\n"
                                         "  - {name: local, base: ./models/m, ft: models/m}\n")
    csv_file, yaml_file = load_board_file(tmp_path / "pairs.csv"), load_board_file(tmp_path / "pairs.yaml")
    assert csv_file.pairs == yaml_file.pairs
    assert csv_file.pairs[0] == PairEntry("cake", "gemma-3-270m", "demo", None, {"description": "bakes, cakes"})
    assert csv_file.pairs[1].base == str((tmp_path / "models" / "m").resolve()) == csv_file.pairs[1].ft
    assert yaml_file.settings == {"n": 64, "steer": False} and csv_file.settings == {}


@pytest.mark.parametrize(("name", "text", "message"), [
    ("p.csv", "name,base,ft,colour\na,b,c,red\n", "unknown column(s) colour"),
    ("p.csv", "name,base\na,b\n", "missing column(s) ft"),
    ("p.csv", "name,base,ft\na,b,\n", "pair 1: missing ft"),
    ("p.csv", "name,base,ft\na,b,c\na,d,e\n", "duplicate pair name 'a'"),
    ("p.yaml", "- {name: a, base: b}\n", "pair 1: missing ft"),
    ("p.yaml", "- {name: a, base: b, ft: c, lr: 3}\n", "unknown field(s) lr"),
    ("p.yaml", "pairs: [{name: a, base: b, ft: c}]\nsettings: {colour: red}\n", "unknown setting(s) colour"),
    ("p.yaml", "pairs: [a, b\n", "not valid YAML"),
    ("p.yaml", "{}\n", "a mapping with a 'pairs' list"),
    ("p.txt", "name,base,ft\n", "unknown pairs file type"),
])
def test_bad_board_files_give_one_line_errors(tmp_path: Path, name: str, text: str, message: str) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(UserError) as caught:
        load_board_file(tmp_path / name)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_plan_groups_pairs_by_base(planted: dict[str, str], tiny_dir: Path) -> None:
    entries = [PairEntry("other", str(tiny_dir), str(tiny_dir)), PairEntry("a", planted["base"], planted["mlp"]),
               PairEntry("bad", "/no/such", "/no/such"), PairEntry("same", planted["base"], planted["base"]),
               PairEntry("b", planted["base"], planted["base"], adapter=planted["attn"])]
    order = plan([plan_pair(e, TriageSettings(), None) for e in entries])
    assert [p.name for p in order] == ["other", "same", "a", "b", "bad"]
    assert count_loads(order) == 2  # the two checkpoints; the adapters attach to the planted base


def test_score_rewards_a_coherent_concentrated_trace_and_is_zero_without_one() -> None:
    report = hostile_report()
    strong = trace_strength(report)
    assert strong["peak_rel_norm"] == 0.5 and strong["coherence"] == 1.0 and strong["tokens"] == ["cake"]
    assert strong["score"] == round(0.5 / 0.6 * (1 + strong["concentration"] + 1.0) / 3, 4)
    report["steering"]["1"]["strength"] = 0.0  # no coherent strength: the readability drops
    assert trace_strength(report)["score"] < strong["score"]
    for row in report["layers"].values():
        for pos in row:
            row[pos] = {**row[pos], "rel_norm": 0.0}
    assert trace_strength(report)["score"] == 0.0


def hostile_report() -> dict[str, Any]:
    cell = {"norm": 1.0, "rel_norm": 0.5, "logit_lens": [[HOSTILE, 0.5], ["cake", 0.2]], "relevance": None,
            "patchscope": {"best_scale": 1.0, "selected": [HOSTILE],
                           "scales": [{"scale": 1.0, "tokens": [[HOSTILE, 0.9]]}]}}
    return {"run": "adl-x", "base": "b", "ft": "f", "corpus": "self:", "n": 4, "k": 2, "n_layers": 2, "layer": 1,
            "positions": [0, 1], "layers": {"0": {"0": cell, "1": cell}, "1": {"0": cell, "1": cell}},
            "steering": {"1": {"strength": 2.0, "coherence": [[2.0, 1.0]], "prompts": [
                {"prompt": "<b>p</b>", "steered": "<img src=x onerror=alert(1)>", "unsteered": "a & b"}]}},
            "hypothesis": None, "description": None}


def test_html_escapes_hostile_tokens_and_names(tmp_path: Path) -> None:
    report = hostile_report()
    entry = {"name": "../../<evil>", "base": "b", "ft": "f\"><script>", "score": 0.4, "trace": trace_strength(report),
             "hypothesis": HOSTILE, "hypothesis_source": "keywords", "run": "adl-x", "error": None, "report": report}
    failed = {"name": "broken", "base": "b", "ft": "f", "score": None, "error": HOSTILE, "report": None}
    board = {"name": "<b>", "pairs": [entry, failed], "score_definition": "s"}
    typed = TriageBoardResult.from_json(board)
    for page in (*map(pair_page, typed.pairs), index_page(typed, ["01-evil.html", "02-broken.html"])):
        assert "<script>" not in page and "<img" not in page and "<evil>" not in page
    page = pair_page(typed.pairs[0])
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page and "&lt;img src=x" in page
    assert 'id="heatmap"' in page and "http" not in page  # nothing fetched
    index = write_report(tmp_path / "out", typed)
    assert sorted(p.name for p in index.parent.iterdir()) == ["01-evil.html", "02-broken.html", "index.html"]


def test_cli_board_prints_json_and_writes_html(planted: dict[str, str], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from engine.ops import load_all
    from tui.cli import app, board

    sent: list[dict[str, Any]] = []

    def in_process(method: Any, params: Any, **_: Any) -> Any:
        sent.append(params.to_json())
        return method.result.from_json(json.loads(json.dumps(load_all()[method.name].fn(params.to_json(),
                                                                                        JobContext()))))

    monkeypatch.setattr(board, "call_engine", in_process)
    pairs = tmp_path / "pairs.yaml"
    pairs.write_text("settings: {n: 8, k: 3, steer: false, device: cpu}\npairs:\n"
                     f"  - {{name: same, base: {planted['base']}, ft: {planted['base']}}}\n"
                     f"  - {{name: mlp, base: {planted['base']}, ft: {planted['base']}, adapter: {planted['mlp']}}}\n")
    result = CliRunner().invoke(app, ["triage", "--pairs", str(pairs), "--json", "--html", str(tmp_path / "html"),
                                      "-k", "2"])
    assert result.exit_code == 0, result.output
    assert sent[0]["settings"] == {"k": 2} and sent[0]["reports"] is True  # typed options only
    printed = json.loads(result.stdout)  # only JSON on stdout: "HTML report: …" goes to stderr
    assert [p["name"] for p in printed["pairs"]] == ["mlp", "same"]
    assert all({"name", "score", "hypothesis", "error", "run"} <= set(p) and "report" not in p
               for p in printed["pairs"])
    assert {p.name for p in (tmp_path / "html").iterdir()} == {"index.html", "01-mlp.html", "02-same.html"}
    single = CliRunner().invoke(app, ["triage", "--base", planted["base"], "--ft", planted["base"], "--adapter",
                                      planted["attn"], "-n", "8", "-k", "2", "--no-steer", "--device", "cpu",
                                      "--html", str(tmp_path / "one")])
    assert single.exit_code == 0, single.output
    assert "difflens triage" in single.output and sent[-1]["pairs"][0]["adapter"] == planted["attn"]
    assert {p.name for p in (tmp_path / "one").iterdir()} == {"index.html", "01-lora-attn.html"}
    assert 'id="heatmap"' in (tmp_path / "one" / "01-lora-attn.html").read_text()
    clash = CliRunner().invoke(app, ["triage", "--pairs", str(pairs), "--base", "x"])
    assert clash.exit_code == 2 and "mutually exclusive" in clash.output


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class ConnectionLog:
    """A local port that records every connection made to it and closes it at once: pointed at as the browser's
    proxy, it sees every http(s) request a page makes (file:// pages and nothing else go direct)."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.seen: list[bytes] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(1)
                with contextlib.suppress(OSError):
                    self.seen.append(conn.recv(512))

    def page_requests(self) -> list[bytes]:
        """What was asked for, less Chromium's own calls home that any page gets: network time and accounts
        (*.google.com) and its component updater (update.googleapis.com, called even with
        --disable-component-update). Other googleapis hosts (fonts, ajax) are what a page would load: counted."""
        own = rb"\S+ (http://)?([a-z0-9.]*google\.com|update\.googleapis\.com)[:/]"
        return [r for r in self.seen if r and not re.match(own, r)]

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.server.close()


@pytest.mark.skipif(chromium() is None, reason="Debian's chromium is not installed (apt-get install chromium)")
def test_demo_report_and_board_render_in_headless_chromium_with_no_network(tmp_path: Path) -> None:
    report = json.loads(DEMO_REPORT.read_text())
    trace = trace_strength(report)
    entry = {"name": "demo", "base": report["base"], "ft": report["ft"], "score": trace["score"], "trace": trace,
             "hypothesis": report["hypothesis"]["summary"], "hypothesis_source": "keywords", "run": report["run"],
             "error": None, "report": report}
    failed = {"name": "gone", "base": "b", "ft": "/nope", "score": None, "error": "model path does not exist"}
    write_report(tmp_path, TriageBoardResult.from_json({"name": "demo", "pairs": [entry, failed]}))
    page = tmp_path / "01-demo.html"
    log = ConnectionLog()
    flags = [chromium() or "", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--proxy-server=http://127.0.0.1:{log.port}", "--proxy-bypass-list=<-loopback>",
             "--window-size=1280,2000"]
    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body></body></html>")
    fetching = tmp_path / "fetching.html"  # the control: a page that does fetch is seen
    fetching.write_text('<!DOCTYPE html><html><body><img src="http://difflens.invalid/x.png"></body></html>')

    def browse(url: str, *args: str) -> str:
        with tempfile.TemporaryDirectory() as profile:
            return subprocess.run([*flags, f"--user-data-dir={profile}", *args, url], check=True,
                                  capture_output=True, text=True, timeout=120).stdout

    try:
        browse(page.as_uri(), f"--screenshot={tmp_path / 'demo.png'}")
        browse(blank.as_uri(), f"--screenshot={tmp_path / 'blank.png'}")
        dom = browse(page.as_uri(), "--dump-dom")
        board = browse((tmp_path / "index.html").as_uri(), "--dump-dom")
        assert log.page_requests() == []  # neither page asked the network for anything
        browse(fetching.as_uri(), "--dump-dom")
    finally:
        log.close()
    assert any(b"difflens.invalid" in request for request in log.page_requests())
    shot, empty = (tmp_path / "demo.png").read_bytes(), (tmp_path / "blank.png").read_bytes()
    assert shot[:8] == b"\x89PNG\r\n\x1a\n" and shot[16:24] == (1280).to_bytes(4, "big") + (2000).to_bytes(4, "big")
    assert len(shot) > 10 * len(empty)  # a white page compresses to almost nothing: this one has content
    assert 'id="heatmap"' in dom and dom.count("<td style=\"background:") == report["n_layers"] * report["k"]
    steered = next(s["steered"] for cell in report["steering"].values() for s in cell["prompts"])
    assert 'class="txt steered"' in dom and steered.split()[0] in dom
    # the per-layer profile: three lines over every layer, the report layer marked
    profile = dom[dom.index('<svg id="layer-profile"'):]
    profile = profile[:profile.index("</svg>")]
    assert profile.count('class="series"') == 3 and profile.count("<circle") == 3 * report["n_layers"]
    assert f"report layer {report['layer']}" in profile and 'class="marker"' in profile
    # Patchscope across scales at every position, the chosen scale marked; steering's bars; the board's ranking
    positive = [s for s in report["layers"]["15"]["1"]["patchscope"]["scales"] if s["scale"] > 0]
    scope = dom[dom.index('<svg id="patchscope-pos-1"'):]
    scope = scope[:scope.index("</svg>")]
    assert len(positive) > 20 and "␣cake" in scope and "chosen 40" in scope
    assert all(f'id="patchscope-pos-{p}"' in dom for p in range(report["k"]))
    assert 'id="steering-similarity"' in dom and dom.count('class="bar"') >= 3
    assert 'id="board-ranking"' in board and "1. demo" in board and "failed" in board


@pytest.mark.asyncio
async def test_start_screen_shows_the_board_and_enter_opens_a_pair(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from tui.app import DiffLensApp
    from tui.screens.start import StartScreen
    from tui.screens.workbench import WorkbenchScreen
    from tui.sessions.replay import ReplayClient
    from tui.state import Start
    from tui.widgets.pair_bar import PairBar

    monkeypatch.setenv("DIFFLENS_SESSIONS_DIR", str(tmp_path))
    recording = json.loads((Path(__file__).resolve().parents[1] / "data" / "workbench_recording.json").read_text())
    run = "3f9c2a71e0b4d5c6"
    board = {"name": "pairs", "pairs": [
        {"name": "cake", "base": "gemma-3-270m", "ft": "demo", "score": 0.61, "hypothesis": "baking", "run": run},
        {"name": "gone", "base": "b", "ft": "/nope", "score": None, "error": "model path does not exist"}]}
    recording["calls"].append({"method": "triage.boards", "result": {"board": board}})
    client = ReplayClient.from_recording(recording)

    async def factory() -> ReplayClient:
        return client

    app = DiffLensApp(client_factory=factory, start=Start())
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert isinstance(app.screen, StartScreen)
        table = app.screen.query_one("#board")
        assert table.row_count == 2 and "baking" in str(table.get_row_at(0)[3])
        assert str(table.get_row_at(0)[1]) == "untested"  # a board stored before significance
        assert "does not exist" in str(table.get_row_at(1)[3])
        table.focus()
        await pilot.press("enter")
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert isinstance(app.screen, WorkbenchScreen)
        assert app.screen.query_one(PairBar).view.pair.run == run


class FakeHub:
    """`HfApi.list_models` over a fixed model tree (the hub is not reachable from tests)."""

    TREE = {"base_model:finetune:org/base": [("org/full-ft", 50), ("org/cake-ft", 5)],
            "base_model:adapter:org/base": [("org/lora-cake", 100), ("org/lora-other", 1), ("org/full-ft", 50)]}

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def list_models(self, *, filter: str, search: str | None, sort: str, limit: int | None) -> list[Any]:
        self.calls.append({"filter": filter, "search": search, "sort": sort, "limit": limit})
        found = [(name, downloads) for name, downloads in self.TREE.get(filter, []) if not search or search in name]
        return [type("ModelInfo", (), {"id": name, "downloads": downloads}) for name, downloads in found][:limit]


def test_hub_pairs_list_finetunes_and_adapters_write_a_board_file_and_respect_limit(
        monkeypatch: pytest.MonkeyPatch, isolated_home: Path) -> None:
    from engine.ops import board_ops as board_op

    fake = FakeHub()
    monkeypatch.setattr("huggingface_hub.HfApi", lambda: fake)  # hub.py imports it when it asks the hub
    ran: list[Any] = []
    monkeypatch.setattr(board_op, "run_board", lambda entries, settings, ctx, **kw: ran.append((entries, kw)) or {})

    triage_board({"pairs": "hub:org/base?cake", "limit": 5, "settings": FAST}, JobContext())
    entries, kw = ran[-1]
    assert [(e.name, e.ft, e.adapter) for e in entries] == [("org/lora-cake", "org/base", "org/lora-cake"),
                                                           ("org/cake-ft", "org/cake-ft", None)]
    assert {c["filter"] for c in fake.calls} == {"base_model:finetune:org/base", "base_model:adapter:org/base"}
    assert all(c["search"] == "cake" for c in fake.calls)
    written = Path(kw["source"])
    assert written.parent == isolated_home / "boards" and written.suffix == ".yaml"
    assert [p.name for p in load_board_file(written).pairs] == ["org/lora-cake", "org/cake-ft"]

    triage_board({"pairs": "hub:org/base", "limit": 2, "settings": FAST}, JobContext())
    assert [e.name for e in ran[-1][0]] == ["org/lora-cake", "org/full-ft"]  # most downloaded, listed once

    with pytest.raises(UserError, match="no finetunes or adapters of org/base matching 'zzz'"):
        triage_board({"pairs": "hub:org/base?zzz", "settings": FAST}, JobContext())
    with pytest.raises(UserError, match="does not name a hub model"):
        triage_board({"pairs": "hub:not a model", "settings": FAST}, JobContext())


def test_cli_sends_a_hub_query_unresolved_with_its_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from tui.cli import app, board

    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(board, "call_engine",
                        lambda method, params, **_: sent.append(params.to_json())
                        or method.result.from_json({"pairs": []}))
    result = CliRunner().invoke(app, ["triage", "--pairs", "hub:org/base?cake", "--limit", "3", "--json"])
    assert result.exit_code == 0, result.output
    assert sent[0]["pairs"] == "hub:org/base?cake" and sent[0]["limit"] == 3


def test_devices_cpu_cpu_runs_base_groups_in_two_workers_with_the_serial_scores(
        planted: dict[str, str], tiny_dir: Path, tiny_ft_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.triage.devices import assign, base_groups

    monkeypatch.delenv("DIFFLENS_LLM_MODEL", raising=False)
    pairs = [*three_pairs(planted), {"name": "other", "base": str(tiny_dir), "ft": str(tiny_ft_dir)}]
    order = plan([plan_pair(PairEntry(**p), TriageSettings(), None) for p in pairs])
    lanes = assign(base_groups(order), 2)
    assert [[p.name for g in lane for p in g] for lane in lanes] == [["same", "mlp", "attn"], ["other"]]
    events: list[dict[str, Any]] = []
    parallel = triage_board({"pairs": pairs, "settings": FAST, "devices": "cpu,cpu"}, JobContext(emit=events.append))
    assert all(p["error"] is None and not p["skipped"] for p in parallel["pairs"])
    assert any("2 devices" in e.get("message", "") for e in events if e["type"] == "progress")
    rerun = triage_board({"pairs": pairs, "settings": FAST, "devices": "cpu,cpu"}, JobContext())
    assert rerun["skipped"] == 4  # the workers wrote to this store, under the serial keys
    from store import results

    results.connect().execute("delete from results")
    results.connect().execute("delete from board_pairs")
    serial = triage_board({"pairs": pairs, "settings": FAST}, JobContext())
    assert [(p["name"], p["score"]) for p in serial["pairs"]] == [(p["name"], p["score"]) for p in parallel["pairs"]]
    with pytest.raises(UserError, match="lists devices"):
        triage_board({"pairs": pairs, "settings": FAST, "devices": "auto,cpu"}, JobContext())


def test_without_ray_nothing_imports_ray() -> None:
    code = ("import sys; from engine.ops import load_all; load_all(); import tui.cli, engine.triage.board; "
            "assert 'ray' not in sys.modules, 'ray imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-2000:]
