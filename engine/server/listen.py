"""Transports: stdio (one private client), a Unix socket (mode 0600 in a 0700 directory) and, only when
asked, TCP where every connection must first present the token.

A listener holds at most `MAX_CONNECTIONS` clients (two threads each; one more is refused with a one-line error),
and one watchdog thread per listener drops a client that has not authenticated `AUTH_DEADLINE_S` after it
connected (however it trickles bytes) and one that has neither sent nor been sent anything for `IDLE_TIMEOUT_S`."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import stat
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import UserError
from engine.protocol import paths, wire
from engine.server.core import Engine
from engine.server.peer import FLUSH_S, Peer

log = logging.getLogger("difflens.engine")

AUTH_DEADLINE_S = 10.0    # a connection that has not authenticated this long after it connected is dropped
IDLE_TIMEOUT_S = 3600.0   # a connection with no message either way for this long is dropped
MAX_CONNECTIONS = 64      # per listener; the next one is refused
WATCH_INTERVAL_S = 0.5    # how often the watchdog looks


def serve_stdio(engine: Engine) -> Peer:
    """Serve the parent process over stdin/stdout; the engine stops when stdin closes.

    Protocol output keeps a private copy of fd 1, and fd 1 itself is pointed at stderr, so that stray
    prints (ours, a library's, C code's) cannot corrupt the message stream.
    """
    proto_out = os.fdopen(os.dup(1), "wb", buffering=0)
    proto_in = os.fdopen(os.dup(0), "rb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def write(data: bytes) -> None:
        proto_out.write(data)

    def close() -> None:
        proto_out.close()

    peer = Peer(engine, label="stdio", readline=proto_in.readline, write=write, close=close)
    engine.attach(peer)

    def run() -> None:
        peer.serve()
        peer.wait_closed(FLUSH_S)  # its last answers are written before the engine (and the process) stops
        engine.stop()   # a private engine lives as long as its one client

    threading.Thread(target=run, name="stdio-reader", daemon=True).start()
    return peer


@dataclass
class _Connection:
    """One accepted client as the watchdog sees it."""

    sock: socket.socket
    peer: Peer | None = None
    since: float = field(default_factory=time.monotonic)
    last: float = field(default_factory=time.monotonic)   # the last message read or written


class Listener:
    """Accepts connections on a bound socket; one `Peer` (two threads) per connection, at most `MAX_CONNECTIONS`,
    watched by one thread for the authentication deadline and the idle timeout."""

    def __init__(self, engine: Engine, sock: socket.socket, kind: str, token: str | None = None) -> None:
        self.engine = engine
        self.sock = sock
        self.kind = kind
        self.token = token
        self._count = 0
        self._open: list[_Connection] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, name=f"{kind}-listener", daemon=True)
        self._watchdog = threading.Thread(target=self._watch, name=f"{kind}-watchdog", daemon=True)

    def start(self) -> Listener:
        self._thread.start()
        self._watchdog.start()
        return self

    def _accept(self) -> None:
        while not self.engine.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed by `close`
            with self._lock:
                self._open = [c for c in self._open if c.peer is None or not c.peer.closed]
                full = len(self._open) >= MAX_CONNECTIONS
                entry = _Connection(conn)
                if not full:
                    self._open.append(entry)
            if full:
                self._refuse(conn)
                continue
            self._count += 1
            entry.peer = self._peer(entry)
            self.engine.attach(entry.peer)
            threading.Thread(target=entry.peer.serve, name=f"peer-{entry.peer.label}", daemon=True).start()

    def _peer(self, entry: _Connection) -> Peer:
        conn, reader = entry.sock, entry.sock.makefile("rb")

        def readline(size: int) -> bytes:
            line = reader.readline(size)
            entry.last = time.monotonic()
            return line

        def write(data: bytes) -> None:
            conn.sendall(data)
            entry.last = time.monotonic()

        return Peer(self.engine, label=f"{self.kind}-{self._count}", readline=readline, write=write,
                    close=lambda: _hang_up(conn), token=self.token)

    def _refuse(self, conn: socket.socket) -> None:
        """One error line and the door: the listener is full (a client that does not read it loses nothing)."""
        log.warning("%s listener full (%d clients): refused a connection", self.kind, MAX_CONNECTIONS)
        message = wire.error(None, wire.ENGINE_FULL, f"the engine is serving {MAX_CONNECTIONS} clients, its limit",
                             {"problem": f"the engine already serves {MAX_CONNECTIONS} clients",
                              "fix": "close another difflens client of this engine, then connect again"})
        with contextlib.suppress(OSError):
            conn.settimeout(1.0)
            conn.sendall(wire.encode(message))
        _hang_up(conn)

    def _watch(self) -> None:
        """Drop clients past the authentication deadline or the idle timeout (one thread for all of them)."""
        while not self.engine.stopping.wait(WATCH_INTERVAL_S):
            now = time.monotonic()
            with self._lock:
                entries = list(self._open)
            for entry in entries:
                peer = entry.peer
                if peer is None or peer.closed:
                    continue
                if not peer.authenticated and now - entry.since > AUTH_DEADLINE_S:
                    log.warning("client %s dropped: no valid token within %gs", peer.label, AUTH_DEADLINE_S)
                elif now - entry.last > IDLE_TIMEOUT_S:
                    log.info("client %s dropped: idle for %gs", peer.label, IDLE_TIMEOUT_S)
                else:
                    continue
                peer.close()
                _hang_up(entry.sock)  # the reader may sit in recv(): this wakes it

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def _hang_up(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_RDWR)
    conn.close()


def bind_unix(path: Path) -> socket.socket:
    """A listening socket at `path` with mode 0600, in the private runtime dir by default (a directory
    made for `--socket` is 0700 too). The caller has checked that no live engine owns `path`
    (`daemon.claim_socket`)."""
    if path.parent == paths.default_socket_path().parent:
        paths.private_dir(path.parent)
    else:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    except OSError as exc:
        sock.close()
        raise UserError(f"cannot listen on {path}: {exc}", "pass --socket with a shorter, writable path") \
            from None
    finally:
        os.umask(old)
    path.chmod(0o600)
    sock.listen(16)
    return sock


def bind_tcp(address: str) -> socket.socket:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise UserError(f"bad TCP address {address!r}", "pass --tcp 127.0.0.1:PORT")
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("listening on %s: reachable beyond this machine; only the token protects it", host)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, int(port)))
    except OSError as exc:
        sock.close()
        raise UserError(f"cannot listen on {address}: {exc}", "pick a free port") from None
    sock.listen(16)
    return sock


def ensure_token(path: Path) -> str:
    """The token in `path`, created (0600, random) if missing; a token file others can read is refused."""
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(32) + "\n")
            log.info("wrote a new token to %s", path)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise UserError(f"token file {path} is readable by others (mode {mode:o})", f"run chmod 600 {path}")
    token = path.read_text().strip()
    if len(token) < 16:
        raise UserError(f"token in {path} is too short", "use at least 16 random characters, or delete the file")
    return token
