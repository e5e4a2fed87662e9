"""How CLI commands talk to the user: JSON on stdout, Rich tables and progress on the terminal."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, NoReturn

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from store import jsonvalue

out = Console()
err = Console(stderr=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """One line on stderr and a non-zero exit: the whole contract for bad input."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, markup=True, soft_wrap=True)
    raise SystemExit(code)


def emit_json(payload: Any) -> None:
    sys.stdout.write(jsonvalue.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


class JobProgress:
    """A Rich progress bar on stderr fed by engine progress events (quiet when stderr is not a TTY)."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                                 TextColumn("{task.completed}/{task.total}"), TextColumn("{task.fields[note]}"),
                                 TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=True,
                                 disable=not err.is_terminal)
        self.task = self.progress.add_task(title, total=None, note="")

    def __enter__(self) -> Callable[[dict[str, Any]], None]:
        self.progress.start()
        return self.on_event

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def on_event(self, event: dict[str, Any]) -> None:
        if event.get("type") == "progress":
            self.progress.update(self.task, completed=event.get("done") or 0, total=event.get("total"),
                                 note=event.get("message", ""))
