"""The difflens workbench app: wires the engine link, the screens and the global keys; nothing else.

`DiffLensApp(client_factory=..., start=..., session=...)` takes how to get an engine client (tests pass fakes or a
recording; None replays with no engine), what to open first and the session to record into (a name, or a
`SessionTap` for replay). `run_workbench(target, run_id, demo, session)` is what the CLI calls.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.notifications import SeverityLevel
from textual.reactive import reactive

from engine.protocol import methods
from tui.client import ClientFactory, connect
from tui.commands import WorkbenchCommands
from tui.link import EngineLink
from tui.messages import EngineConnected, EngineLost, JobChanged, OpFailed, StatusReady
from tui.render.plain_text import printable
from tui.screens.keys import KeysScreen
from tui.screens.session_actions import ask_note, ask_save_as, open_session, session_tap, snapshot_ui
from tui.screens.start import StartScreen
from tui.screens.workbench import WorkbenchScreen
from tui.sessions.client import SessionTap
from tui.state import EngineView, Start
from tui.widgets.pair_bar import PairBar

STATUS_EVERY_S = 5.0
SAVE_UI_EVERY_S = 0.5


class DiffLensApp(App[None]):
    """Start screen or workbench over one engine client; errors become notifications, never a crash."""

    TITLE = "difflens"
    CSS_PATH = Path(__file__).resolve().parent / "styles" / "app.tcss"
    COMMANDS = App.COMMANDS | {WorkbenchCommands}
    BINDINGS = [
        Binding("question_mark", "keys", "Keys", key_display="?"),
        Binding("x", "cancel_job", "Cancel job", show=False),
        Binding("ctrl+r", "reconnect", "Reconnect", show=False),
        Binding("ctrl+n", "note", "Add note", show=False),
        Binding("ctrl+s", "save_session", "Save session as", show=False),
        Binding("q", "quit", "Quit"),
    ]

    engine_view: reactive[EngineView] = reactive(EngineView)

    def __init__(self, client_factory: ClientFactory | None, start: Start | None = None,
                 session: str | SessionTap | None = None) -> None:
        super().__init__()
        self.start = start or Start()
        self.sessions = session_tap(session)
        if self.sessions.recorder is not None:
            self.sessions.recorder.on_error = lambda text: self.notify(text, severity="error", timeout=15)
        self.link = EngineLink(self.sessions.wrap(client_factory), self.post_message)
        self._connected_once = False

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = True) -> None:
        """Every notification (names, engine errors, session problems) is shown as text: never read as markup,
        its escapes replaced (`markup` is accepted for Textual's signature and ignored)."""
        super().notify(printable(message), title=printable(title), severity=severity, timeout=timeout, markup=False)

    def on_mount(self) -> None:
        self.connect_engine()
        if self.sessions.source is not None and not self.start.opens_workbench:
            open_session(self, self.sessions, self.link, self.sessions.source)
        else:
            first = WorkbenchScreen(self.start, self.link) if self.start.opens_workbench else self._start_screen()
            self.push_screen(first)
        self.set_interval(STATUS_EVERY_S, self.refresh_status)
        self.set_interval(SAVE_UI_EVERY_S, self.save_session_ui)

    def _start_screen(self) -> StartScreen:
        return StartScreen(self.link, lambda ref: open_session(self, self.sessions, self.link, ref))

    def save_session_ui(self) -> None:
        """Keep the recording session's UI state (cursor, pane settings) current."""
        if self.screen_stack:
            snapshot_ui(self.sessions, self.screen)

    @work(group="connect", exclusive=True, exit_on_error=False)
    async def connect_engine(self) -> None:
        if await self.link.connect():
            self.refresh_status()

    @work(group="status", exclusive=True, exit_on_error=False)
    async def refresh_status(self) -> None:
        if self.link.client is not None and not self.link.lost:
            status = await self.link.call(methods.ENGINE_STATUS, methods.NoParams(), quiet=True)
            if status is not None:
                self.post_message(StatusReady(status))

    def watch_engine_view(self, view: EngineView) -> None:
        for screen in self.screen_stack:
            for bar in screen.query(PairBar):
                bar.view = replace(bar.view, engine=view)

    def on_engine_connected(self, message: EngineConnected) -> None:
        self.engine_view = replace(self.engine_view, description=message.description, connected=True, lost=False)
        if self._connected_once:
            self.notify(f"reconnected to {message.description}")
            for screen in self.screen_stack:
                screen.post_message(EngineConnected(message.description))
        self._connected_once = True

    def on_engine_lost(self, message: EngineLost) -> None:
        self.engine_view = replace(self.engine_view, connected=False, lost=True, job=None)
        self.notify(f"{message.reason}\nctrl+r (or Reconnect in ctrl+p) reconnects.", title="engine unavailable",
                    severity="error", timeout=15)

    def on_op_failed(self, message: OpFailed) -> None:
        self.notify(message.error, title=message.method, severity="error", timeout=8)

    def on_job_changed(self, message: JobChanged) -> None:
        self.engine_view = replace(self.engine_view, job=message.job)

    def on_status_ready(self, message: StatusReady) -> None:
        status = message.status
        self.engine_view = replace(self.engine_view, device=status.device,
                                   model_bytes=sum(m.bytes for m in status.models))

    def action_keys(self) -> None:
        """Show every key of the current screen."""
        if not isinstance(self.screen, KeysScreen):
            self.push_screen(KeysScreen(self.screen))

    def action_reconnect(self) -> None:
        """Attach to the engine again (a new private engine when it was a child that died)."""
        self.notify("reconnecting…")
        self.connect_engine()

    async def action_cancel_job(self) -> None:
        """Stop the newest running job."""
        label = await self.link.cancel_newest()
        self.notify(f"cancelled {label}" if label else "no job is running")

    def action_runs(self) -> None:
        """Back to the start screen: cached runs and saved sessions."""
        if len(self.screen_stack) > 2:
            self.pop_screen()
        else:
            self.switch_screen(self._start_screen())

    def action_note(self) -> None:
        """Write a note into the session at the selected cell."""
        ask_note(self, self.sessions)

    def action_save_session(self) -> None:
        """Name this analysis: it is saved as a session from now on (and what is on screen already)."""
        ask_save_as(self, self.sessions)

    async def action_quit(self) -> None:
        """Quit, saving the session's latest UI state first."""
        self.save_session_ui()
        self.exit()

    async def on_unmount(self) -> None:
        await self.link.close()  # bounded: a private engine child that lingers is terminated, then killed


def run_workbench(target: str | None = None, run_id: str | None = None, demo: bool = False,
                  session: str | None = None) -> None:
    """Open the workbench: `target` as for `tui.client.connect` (None: local engine or a private child);
    `run_id` opens that cached run, `demo` the embedded default pair; neither opens the start screen (or the
    view of `session`, which records every action from then on)."""
    start = Start.demo() if demo else Start(run=run_id)
    DiffLensApp(client_factory=lambda: connect(target), start=start, session=session).run()
