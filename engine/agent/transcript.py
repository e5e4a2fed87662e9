"""The record of one agent run: every message, tool call, result, token count and cost, as events.

Events are redacted, numbered and timed as they happen, handed to a callback (the op streams them to the
TUI), and kept for the stored run. Streamed tokens go to the callback only: the full reply is stored once
in its `assistant` event."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.protocol.redact import Redactor, StreamRedactor
from store.atomic import write_text_atomic

Event = dict[str, Any]
STREAM_ONLY = frozenset({"token"})


class Transcript:
    def __init__(self, on_event: Callable[[Event], None] | None = None,
                 secrets: tuple[str, ...] | list[str] = ()) -> None:
        self.events: list[Event] = []
        self.redactor = Redactor(secrets)
        self._stream = StreamRedactor(self.redactor)
        self._on_event = on_event
        self._t0 = time.monotonic()
        self._seq = 0

    def emit(self, kind: str, **fields: Any) -> Event:
        """Record (unless stream-only) and forward one event."""
        event = self.redactor.obj({"type": kind, "seq": self._seq,
                                   "t": round(time.monotonic() - self._t0, 3), **fields})
        self._seq += 1
        if kind not in STREAM_ONLY:
            self.events.append(event)
        if self._on_event is not None:
            self._on_event(event)
        return event

    def stream(self, piece: str) -> None:
        """Forward streamed reply text (as `token` events), holding back what might be a split secret."""
        if text := self._stream.feed(piece):
            self.emit("token", text=text)

    def end_stream(self) -> None:
        if text := self._stream.flush():
            self.emit("token", text=text)

    def save(self, path: Path, header: dict[str, Any]) -> Path:
        """Write `{**header, "transcript": events}` atomically (redacted again, header included)."""
        document = self.redactor.obj({**header, "transcript": self.events})
        write_text_atomic(path, json.dumps(document, indent=1, ensure_ascii=False, default=str))
        return path
