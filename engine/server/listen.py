"""Transports: stdio (one private client), a Unix socket (mode 0600 in a 0700 directory) and, only when
asked, TCP where every connection must first present the token."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import stat
import sys
import threading
from pathlib import Path

from engine.errors import UserError
from engine.protocol import paths
from engine.server.core import Engine
from engine.server.peer import Peer

log = logging.getLogger("difflens.engine")

AUTH_TIMEOUT_S = 10.0   # a TCP connection that has not authenticated by then is dropped


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
        engine.stop()   # a private engine lives as long as its one client

    threading.Thread(target=run, name="stdio-reader", daemon=True).start()
    return peer


class Listener:
    """Accepts connections on a bound socket; one `Peer` (two threads) per connection."""

    def __init__(self, engine: Engine, sock: socket.socket, kind: str, token: str | None = None) -> None:
        self.engine = engine
        self.sock = sock
        self.kind = kind
        self.token = token
        self._count = 0
        self._thread = threading.Thread(target=self._accept, name=f"{kind}-listener", daemon=True)

    def start(self) -> Listener:
        self._thread.start()
        return self

    def _accept(self) -> None:
        while not self.engine.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed by `close`
            self._count += 1
            if self.token is not None:
                conn.settimeout(AUTH_TIMEOUT_S)
            reader = conn.makefile("rb")

            def close(conn: socket.socket = conn) -> None:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()

            def authenticated(conn: socket.socket = conn) -> None:
                conn.settimeout(None)

            peer = Peer(self.engine, label=f"{self.kind}-{self._count}", readline=reader.readline,
                        write=conn.sendall, close=close, token=self.token,
                        on_authenticated=authenticated)
            self.engine.attach(peer)
            threading.Thread(target=peer.serve, name=f"peer-{peer.label}", daemon=True).start()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


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
