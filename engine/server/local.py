"""A minimal blocking client for the engine's own commands (status, stop, attach): one request over the
Unix socket, no asyncio, no TUI."""

from __future__ import annotations

import itertools
import socket
from pathlib import Path
from typing import Any

from engine.protocol import wire

_ids = itertools.count(1)


class NotRunning(Exception):
    """Nothing answers on the socket."""


def connect(path: Path, timeout: float = 5.0) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
    except OSError as exc:
        sock.close()
        raise NotRunning(f"no engine answers on {path} ({exc.strerror or exc})") from None
    return sock


def is_running(path: Path) -> bool:
    try:
        connect(path, timeout=2.0).close()
    except NotRunning:
        return False
    return True


def call(path: Path, method: str, params: dict[str, Any] | None = None, timeout: float = 30.0) -> dict[str, Any]:
    """Send one request and return its result; raises `NotRunning`, or `RuntimeError` with the error."""
    sock = connect(path, timeout)
    try:
        id_ = next(_ids)
        sock.sendall(wire.encode(wire.request(id_, method, params)))
        reader = sock.makefile("rb")
        while (line := wire.read_frame(reader.readline)) is not None:
            message = wire.decode(line)
            if message.get("id") != id_:
                continue  # a notification
            if "error" in message:
                raise RuntimeError(message["error"].get("message", "engine error"))
            return message["result"]
        raise NotRunning(f"the engine on {path} closed the connection")
    except (OSError, wire.ProtocolError) as exc:
        raise NotRunning(f"the engine on {path} stopped answering ({exc})") from None
    finally:
        sock.close()
