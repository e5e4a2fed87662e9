"""How a job's progress reads as words, the same in the pair bar, the panes that wait and the CLI's plain lines."""

from __future__ import annotations

from typing import Any


def eta_text(seconds: float | None) -> str:
    """`ETA 12s` / `ETA 1m20s` (empty while no rate is known yet)."""
    if seconds is None:
        return ""
    s = int(seconds)
    return f"ETA {s // 60}m{s % 60:02d}s" if s >= 60 else f"ETA {s}s"


def steps_text(done: int, total: int | None, message: str = "", eta_s: float | None = None) -> str:
    """`calibrating layer 15: tokens 120/480, ETA 1m20s` — what a waiting pane says instead of "running…"."""
    count = f"{done}/{total}" if total else (f"{done}" if done else "")
    head = " ".join(part for part in (message, count) if part)
    return ", ".join(part for part in (head, eta_text(eta_s)) if part)


def event_text(event: dict[str, Any]) -> str:
    """`steps_text` of one engine progress event."""
    return steps_text(int(event.get("done") or 0), event.get("total"), str(event.get("message") or ""),
                      event.get("eta_s"))
