"""A client transport in tests that answers each request from a script, every reply queued at once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable
from typing import Any

from tui.client import Transport

Responder = Callable[[dict[str, Any]], Iterable[dict[str, Any]]]


class ScriptedTransport(Transport):
    """Answers each request with whatever `responder` yields, all queued at once (worst-case ordering)."""

    description = "scripted"

    def __init__(self, responder: Responder) -> None:
        self.responder = responder
        self.sent: list[dict[str, Any]] = []
        self.inbox: asyncio.Queue[str | None] = asyncio.Queue()

    async def send(self, line: str) -> None:
        message = json.loads(line)
        self.sent.append(message)
        for reply in self.responder(message):
            self.inbox.put_nowait(json.dumps(reply))

    async def receive(self) -> str | None:
        return await self.inbox.get()

    async def close(self) -> None:
        self.inbox.put_nowait(None)
