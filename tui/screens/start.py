"""The start screen: cached runs to open, saved sessions, and a new run (or the demo pair) to compute."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Label

from engine.protocol import methods
from engine.protocol.report_results import TrajectoryResult
from tui.link import EngineLink
from tui.messages import EngineConnected, RunsListed, SessionsListed
from tui.screens.form import Field, FormScreen
from tui.screens.workbench import WorkbenchScreen
from tui.sessions.files import saved_sessions
from tui.state import DEMO_PAIR, Start
from tui.widgets.board_table import BoardTable
from tui.widgets.pair_bar import PairBar
from tui.widgets.plain_table import PlainTable
from tui.widgets.trajectory_table import TrajectoryTable

STYLES = Path(__file__).resolve().parent.parent / "styles"
NEW_RUN_FIELDS = [
    Field("base", "base model (HF id, directory, .gguf)", DEMO_PAIR["base"]),
    Field("ft", "finetuned model (or 'demo')", DEMO_PAIR["ft"]),
    Field("adapter", "adapter (optional)", ""),
    Field("corpus", "corpus (empty: engine default)", ""),
    Field("n", "samples n (empty: default)", ""),
    Field("k", "positions k (empty: default)", ""),
    Field("seed", "seed (empty: default)", ""),
]


def new_run_form_params(values: dict[str, str]) -> dict[str, Any]:
    """Form text → `adl.compute` params; empty fields are left to the engine's defaults."""
    params: dict[str, Any] = {}
    for name, text in values.items():
        text = text.strip()
        if not text:
            continue
        params[name] = int(text) if name in ("n", "k", "seed") else text
    return params



def readable_time(value: object) -> str:
    """`2026-12-02 11:53` from an epoch (the store's) or an ISO string; empty when there is none."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(value))
    return str(value or "")[:16].replace("T", " ")

class StartScreen(Screen[None]):
    """Runs the engine has cached and saved sessions (from the store and `sessions/`); Enter opens either."""

    CSS_PATH = STYLES / "start.tcss"
    BINDINGS = [
        Binding("n", "new_run", "New run"),
        Binding("d", "demo", "Demo pair"),
        Binding("f5,ctrl+l", "refresh", "Refresh", key_display="f5"),
    ]

    def __init__(self, link: EngineLink, open_session: Callable[[str], None] | None = None) -> None:
        super().__init__()
        self.link = link
        self.open_session = open_session

    def compose(self) -> ComposeResult:
        yield PairBar(id="pair-bar")
        with Vertical(id="start"):
            yield Label("Cached runs  [dim](enter opens · n new run · d demo pair)[/dim]", classes="start-head")
            yield PlainTable(id="runs", cursor_type="row", zebra_stripes=True)
            yield Label("Saved sessions  [dim](enter replays one · tab moves here)[/dim]", classes="start-head")
            yield PlainTable(id="sessions", cursor_type="row", zebra_stripes=True)
            yield Label("Triage board  [dim](enter opens the pair · difflens triage --pairs FILE)[/dim]",
                        classes="start-head")
            yield BoardTable(id="board", cursor_type="row", zebra_stripes=True)
            yield Label("", id="trajectory-head", classes="start-head")
            yield TrajectoryTable(id="trajectory", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#runs", DataTable)
        table.add_columns("run", "base", "finetuned", "corpus", "n", "k", "created")
        table.focus()
        self.query_one("#sessions", DataTable).add_columns("session", "base", "finetuned", "actions", "notes",
                                                           "updated", "where")
        self.show_trajectory(None)
        self.load_lists()

    @work(group="lists", exclusive=True, exit_on_error=False)
    async def load_lists(self) -> None:
        runs = await self.link.call(methods.ADL_RUNS, methods.NoParams())
        self.post_message(RunsListed(runs.runs if runs is not None else []))
        self.post_message(SessionsListed(saved_sessions()))
        board = await self.link.call(methods.TRIAGE_BOARDS, methods.NoParams(), quiet=True)
        self.query_one("#board", BoardTable).show(board.board if board is not None else None)
        listed = await self.link.call(methods.TRAJECTORIES, methods.NoParams(), quiet=True)
        self.show_trajectory(listed.latest if listed is not None else None)

    def show_trajectory(self, latest: TrajectoryResult | None) -> None:
        """The latest trajectory's steps (Enter opens a step's run), shown only once one is stored."""
        head, table = self.query_one("#trajectory-head", Label), self.query_one("#trajectory", TrajectoryTable)
        table.show(latest)
        head.display = table.display = bool(latest is not None and latest.steps)
        if latest is not None:
            head.update(f"Trajectory {latest.base} → {latest.ft} ({latest.series})  "
                        "[dim](enter opens the step's run · difflens trajectory)[/dim]")

    def on_runs_listed(self, message: RunsListed) -> None:
        table = self.query_one("#runs", DataTable)
        table.clear()
        for run in message.runs:
            table.add_row(run.run[:12], run.base, run.ft, run.corpus, str(run.n), str(run.k),
                          readable_time(run.created), key=run.run)
        if not message.runs:
            table.add_row(Text("no cached runs yet: n computes one, d the demo pair", style="dim"),
                          "", "", "", "", "", "", key="")

    def on_sessions_listed(self, message: SessionsListed) -> None:
        table = self.query_one("#sessions", DataTable)
        table.clear()
        for s in message.sessions:
            if s.get("error"):
                table.add_row(s["name"], Text(s["error"], style="red"), "", "", "", "", s["where"], key="")
                continue
            updated = readable_time(s.get("updated"))
            table.add_row(Text(str(s["name"]), style="bold"), s.get("base", ""), s.get("ft", ""),
                          str(s.get("actions", "")), str(s.get("notes", "")), updated, s["where"], key=s["key"])
        if not message.sessions:
            table.add_row(Text("no saved sessions", style="dim"), "", "", "", "", "", "", key="")

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        key = event.row_key.value
        if not key or key.startswith("failed:"):
            return
        if event.data_table.id == "sessions":
            if self.open_session is not None:
                self.open_session(key)
        else:
            self.app.push_screen(self._workbench(Start(run=key.partition("#")[0])))

    def _workbench(self, start: Start) -> Screen[None]:
        return WorkbenchScreen(start, self.link)

    def action_new_run(self) -> None:
        """Describe a pair and corpus; the engine computes the mean activation difference."""
        def done(values: dict[str, str] | None) -> None:
            if not values:
                return
            try:
                params = new_run_form_params(values)
            except ValueError:
                self.notify("n, k and seed must be whole numbers", severity="error")
                return
            self.app.push_screen(self._workbench(Start(compute=params)))

        self.app.push_screen(FormScreen("new run", NEW_RUN_FIELDS), done)

    def action_demo(self) -> None:
        """Open the embedded default pair, computing what is missing."""
        self.app.push_screen(self._workbench(Start.demo()))

    def action_refresh(self) -> None:
        """Ask the engine again for runs and sessions."""
        self.load_lists()

    def on_engine_connected(self, message: EngineConnected) -> None:
        self.load_lists()
