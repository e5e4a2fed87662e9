"""One connected client: a reader thread feeding the engine and a writer thread draining an outbox, so that
a slow or stalled client never blocks a job that broadcasts to it."""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from engine.protocol import wire

if TYPE_CHECKING:
    from engine.server.core import Engine

log = logging.getLogger("difflens.engine")

MAX_OUTBOX = 10_000   # messages queued for one client before it is dropped as stalled
FLUSH_S = 2.0         # how long a closing connection may take to write out its last answers


class Peer:
    """A client connection over any byte stream (`readline(size)` / `write(bytes)` / `close()`)."""

    def __init__(self, engine: Engine, *, label: str, readline: Callable[[int], bytes],
                 write: Callable[[bytes], Any], close: Callable[[], None], token: str | None = None) -> None:
        self.engine = engine
        self.label = label
        self.token = token                      # set: the first request must be engine.auth with it
        self.authenticated = token is None
        self._readline = readline
        self._write = write
        self._close = close
        self._outbox: queue.Queue[bytes | None] = queue.Queue()
        self._closed = threading.Event()
        self._inflight = 0                      # requests still being answered
        self._idle = threading.Condition()
        self._writer = threading.Thread(target=self._drain, name=f"peer-writer-{label}", daemon=True)

    def serve(self) -> None:
        """Read and dispatch requests until the client goes away (blocking; run in its own thread)."""
        self._writer.start()
        log.info("client %s connected", self.label)
        try:
            while not self._closed.is_set():
                trusted = self.authenticated  # a client without its token gets a few KiB, not 64 MiB
                try:
                    line = wire.read_frame(self._readline, wire.MAX_MESSAGE_BYTES if trusted
                                               else wire.MAX_AUTH_MESSAGE_BYTES, drain=trusted)
                except wire.ProtocolError as exc:
                    self.send(wire.error(exc.id, exc.code, exc.message, exc.data))
                    if not trusted:
                        break
                    continue
                if line is None:
                    self._finish_answers()  # a client may half-close after its last request
                    break
                if line.strip():
                    self.engine.handle(self, line)
        except (OSError, ValueError) as exc:
            log.info("client %s read failed: %s", self.label, exc)
        finally:
            self.close()

    def send(self, message: dict[str, Any]) -> None:
        """Queue one message (thread-safe, never blocks); a client that stops reading is dropped."""
        if self._closed.is_set():
            return
        if self._outbox.qsize() >= MAX_OUTBOX:
            log.warning("client %s is not reading; dropping it", self.label)
            self.close()
            return
        self._outbox.put(wire.encode(message))

    def begin(self) -> None:
        with self._idle:
            self._inflight += 1

    def end(self) -> None:
        with self._idle:
            self._inflight -= 1
            self._idle.notify_all()

    def _finish_answers(self) -> None:
        with self._idle:
            self._idle.wait_for(lambda: self._inflight == 0 or self._closed.is_set())

    def close(self) -> None:
        """Drop the connection after flushing what is queued; the engine forgets it, jobs run on."""
        if self._closed.is_set():
            return
        self._closed.set()
        self.engine.detach(self)
        self._outbox.put(None)
        log.info("client %s disconnected", self.label)

    def _drain(self) -> None:
        try:
            while (data := self._outbox.get()) is not None:
                self._write(data)
        except (OSError, ValueError) as exc:
            log.info("client %s write failed: %s", self.label, exc)
            self._closed.set()
            self.engine.detach(self)
        finally:
            with contextlib.suppress(OSError):
                self._close()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def wait_closed(self, timeout: float | None = None) -> None:
        self._writer.join(timeout)
