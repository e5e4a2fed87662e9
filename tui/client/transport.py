"""Byte transports behind the client: each carries whole JSON-RPC messages, one per `send`/`receive`.

Pluggable: anything with `send(line)`, `receive()` and `close()` can sit behind `RpcClient` (a replay of
the store, a test double). `receive()` returns None once the other side has gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Sequence

from engine.protocol import wire
from engine.protocol.spawn import module_argv
from tui.client.errors import EngineUnavailable

READ_LIMIT = wire.MAX_MESSAGE_BYTES + 1
# The engine's routine log lines (`2026-12-02 11:53:31,120 INFO difflens.engine: …`) say nothing about why it
# ended; only warnings, errors and anything else (a traceback) are quoted.
_ROUTINE_LOG = re.compile(r"^\d{4}-\d\d-\d\d [\d:,.]+ (DEBUG|INFO) ")
# A private engine exits a fraction of a second after its stdin closes (a running job stops at its next
# cancellation check); one still there after EXIT_GRACE_S is terminated, then killed after TERM_GRACE_S.
# Its store writes are atomic, so a kill leaves nothing half-written.
EXIT_GRACE_S = 2.0
TERM_GRACE_S = 1.0


class Transport(ABC):
    """One connection to an engine; `description` says where it goes, for the user."""

    description: str = "engine"

    @abstractmethod
    async def send(self, line: str) -> None:
        """Send one message (a JSON text without the newline); raises `EngineUnavailable` when closed."""

    @abstractmethod
    async def receive(self) -> str | None:
        """The next message, or None when the connection has ended."""

    @abstractmethod
    async def close(self) -> None:
        """End the connection (idempotent)."""

    def why_closed(self) -> str:
        """Extra words on why the connection ended (e.g. a child's last stderr lines)."""
        return ""


class StreamTransport(Transport):
    """Newline-framed messages over an asyncio stream pair (Unix socket, TCP, a child's pipes)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 description: str) -> None:
        self._reader = reader
        self._writer = writer
        self.description = description

    async def send(self, line: str) -> None:
        try:
            self._writer.write(line.encode("utf-8") + b"\n")
            await self._writer.drain()
        except (ConnectionError, OSError, RuntimeError) as exc:
            raise EngineUnavailable(f"lost the engine at {self.description}: {exc}") from None

    async def receive(self) -> str | None:
        while True:
            try:
                line = await self._reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as exc:
                return exc.partial.decode("utf-8", "replace") or None
            except asyncio.LimitOverrunError as exc:
                await self._skip_line(exc.consumed)
                continue
            except (ConnectionError, OSError):
                return None
            return line.decode("utf-8", "replace")

    async def _skip_line(self, consumed: int) -> None:
        """Drop an oversized message (the engine does not send them; a broken one must not stall us)."""
        await self._reader.readexactly(consumed)
        while True:
            try:
                await self._reader.readuntil(b"\n")
                return
            except asyncio.LimitOverrunError as exc:
                await self._reader.readexactly(exc.consumed)

    async def close(self) -> None:
        if not self._writer.is_closing():
            self._writer.close()
        with contextlib.suppress(ConnectionError, OSError, RuntimeError):
            await self._writer.wait_closed()


class ProcessTransport(StreamTransport):
    """A child process speaking the protocol on stdin/stdout: a private engine or an `ssh` bridge.

    Its stderr is kept (last lines) to explain a failure; closing stdin asks it to exit.
    """

    def __init__(self, proc: asyncio.subprocess.Process, description: str) -> None:
        assert proc.stdout is not None and proc.stdin is not None and proc.stderr is not None
        super().__init__(proc.stdout, proc.stdin, description)
        self.proc = proc
        self._stderr: deque[str] = deque(maxlen=20)
        self._stderr_task = asyncio.create_task(self._keep_stderr(proc.stderr))

    @classmethod
    async def spawn(cls, argv: Sequence[str], description: str, *, env: dict[str, str] | None = None,
                    new_session: bool = False) -> ProcessTransport:
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env=env, limit=READ_LIMIT, start_new_session=new_session)
        except OSError as exc:
            raise EngineUnavailable(f"cannot run {argv[0]}: {exc}") from None
        return cls(proc, description)

    async def _keep_stderr(self, stream: asyncio.StreamReader) -> None:
        with contextlib.suppress(ValueError, asyncio.LimitOverrunError):
            while line := await stream.readline():
                self._stderr.append(line.decode("utf-8", "replace").rstrip())

    def why_closed(self) -> str:
        return closing_words(self.proc.returncode, list(self._stderr))

    async def close(self) -> None:
        """Close its stdin (a private engine cancels its jobs and exits; ssh hangs up), then terminate and at
        last kill it if it lingers, and reap it: a child must not outlive the event loop that watches it."""
        await super().close()
        if not await self._exited(EXIT_GRACE_S):
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()
            if not await self._exited(TERM_GRACE_S):
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(self._stderr_task, timeout=2)

    async def _exited(self, within_s: float) -> bool:
        try:
            await asyncio.wait_for(self.proc.wait(), timeout=within_s)
        except TimeoutError:
            return False
        return True


def closing_words(returncode: int | None, stderr: list[str]) -> str:
    """Why a child ended: killed by which signal or its exit code, and its last lines that are not routine
    logging (so a killed engine's notice does not quote an unrelated "loaded model" line)."""
    lines = [line for line in stderr if line.strip() and not _ROUTINE_LOG.match(line)]
    if returncode is None:
        code = ""
    else:
        code = f"killed by signal {-returncode}" if returncode < 0 else f"exit code {returncode}"
    return "; ".join(part for part in (code, " | ".join(lines[-5:])) if part)


def engine_argv(*args: str) -> list[str]:
    """The command line of a local engine (`python -P -m engine ...`): `difflens engine ...` execs this with
    `child_env()`, since the TUI may not import the engine itself."""
    return module_argv("engine", *args)
