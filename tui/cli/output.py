"""How CLI commands talk to the user: JSON on stdout, Rich tables and progress on the terminal."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, NoReturn

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

from engine.protocol.results import Result
from store import jsonvalue
from tui.progress_text import event_text
from tui.render.plain_text import PlainConsole

out = PlainConsole()  # strings are printed as text: our own styles are `Text` objects
err = PlainConsole(stderr=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """One line on stderr and a non-zero exit: the whole contract for bad input."""
    err.print(Text.assemble(("error:", "bold red"), " ", message), highlight=False, soft_wrap=True)
    raise SystemExit(code)


def emit_json(payload: Any) -> None:
    """`payload` as indented JSON on stdout (an engine result as the engine sent it)."""
    if isinstance(payload, Result):
        payload = payload.to_json()
    sys.stdout.write(jsonvalue.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


PLAIN_INTERVAL_S = 10.0
# a job that ends (or fails) this soon after it starts prints no progress: its error stays one line
PLAIN_QUIET_S = 5.0
"""Off a terminal (a log, CI, a pipe), a progress line at most this often, or when another tenth is done."""


class JobProgress:
    """Engine progress events on stderr: a Rich bar with an ETA on a terminal, else a plain line now and then
    (`training: loss 0.4123 40/200, ETA 1m20s`), so a long job in a log is never silent for minutes."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.plain = not err.is_terminal
        self.progress = Progress(TextColumn("{task.description}", style="bold", markup=False), BarColumn(),
                                 TextColumn("{task.completed}/{task.total}"),
                                 TextColumn("{task.fields[note]}", markup=False),
                                 TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=True,
                                 disable=self.plain)
        self.task = self.progress.add_task(title, total=None, note="")
        self.last_line: tuple[float, int, int, Any] | None = None
        self.began: float | None = None   # the job's first event (a private engine's start does not count)

    def __enter__(self) -> Callable[[dict[str, Any]], None]:
        self.progress.start()
        return self.on_event

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def on_event(self, event: dict[str, Any]) -> None:
        if event.get("type") != "progress":
            return
        if self.plain:
            self._line(event)
            return
        self.progress.update(self.task, completed=event.get("done") or 0, total=event.get("total"),
                             note=event.get("message", ""))

    def _line(self, event: dict[str, Any]) -> None:
        """Once the job has run `PLAIN_QUIET_S`: a count's first event, then one line per `PLAIN_INTERVAL_S` or
        per tenth of the count done."""
        now, done, total = time.monotonic(), int(event.get("done") or 0), event.get("total")
        if self.began is None:
            self.began = now
        if now - self.began < PLAIN_QUIET_S:
            return
        tenth = int(10 * done / total) if total else 0
        if self.last_line is not None:
            when, last_tenth, last_done, last_total = self.last_line
            same_count = total == last_total and done >= last_done
            if same_count and now - when < PLAIN_INTERVAL_S and tenth <= last_tenth:
                return
        self.last_line = (now, tenth, done, total)
        err.print(f"{self.title}: {event_text(event)}", highlight=False, soft_wrap=True)
