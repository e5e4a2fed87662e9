"""`engine attach --stdio`: bridge this process's stdin/stdout to the local engine's socket, starting a
background engine if none runs. It is what `ssh host difflens engine attach --stdio` runs on the far end,
so a dropped SSH connection only ends the bridge; the engine and its jobs run on."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
from pathlib import Path

from engine.errors import UserError
from engine.server import daemon, local


def attach_stdio(sock: Path, *, start: bool = True, serve_args: list[str] | None = None) -> int:
    if not local.is_running(sock):
        if not start:
            raise UserError(f"no engine runs on {sock}", "start one with `difflens engine start`")
        print(f"starting an engine on {sock} (log: {daemon.log_path(sock)})", file=sys.stderr, flush=True)
        daemon.start(sock, serve_args)
    conn = local.connect(sock)
    conn.settimeout(None)
    threading.Thread(target=_upstream, args=(conn,), name="attach-up", daemon=True).start()
    try:
        while data := conn.recv(1 << 16):
            _write_all(1, data)
    except OSError:
        pass  # our stdout went away (the SSH connection dropped): just leave
    finally:
        conn.close()
    return 0


def _upstream(conn: socket.socket) -> None:
    """stdin → engine; on EOF half-close so that the engine flushes its answers and hangs up."""
    try:
        while data := os.read(0, 1 << 16):
            conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
    except OSError:
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_RDWR)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
