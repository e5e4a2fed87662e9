"""`engine serve`: build the engine, open the transports asked for, serve until stopped."""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path
from typing import NoReturn

from engine.protocol import paths
from engine.protocol.redact import redact_logs
from engine.server import daemon
from engine.server.core import Engine
from engine.server.listen import Listener, bind_tcp, bind_unix, ensure_token, serve_stdio

log = logging.getLogger("difflens.engine")


def serve(*, stdio: bool = False, socket_path: Path | None = None, tcp: str | None = None,
          token_file: Path | None = None, workers: int = 1) -> int:
    """Serve over stdio (a private engine for one client) or a Unix socket (plus TCP if asked)."""
    redact_logs()  # before any record: httpx and the SDKs log request URLs at INFO
    logging.basicConfig(stream=sys.stderr, level=os.environ.get("DIFFLENS_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if stdio:
        engine = Engine(workers=workers, where="stdio", preload=False)  # one client: ops load when it needs them
        _on_signals(engine)
        serve_stdio(engine)
        engine.wait()
        _exit_now()
    path = socket_path or paths.default_socket_path()
    lock = daemon.claim_socket(path)
    listeners: list[Listener] = []
    try:
        engine = Engine(workers=workers, where=f"unix:{path}")
        _on_signals(engine)
        listeners.append(Listener(engine, bind_unix(path), "unix").start())
        if tcp:
            token = ensure_token(token_file or paths.default_token_path())
            listeners.append(Listener(engine, bind_tcp(tcp), "tcp", token=token).start())
        log.info("engine pid %d serving on %s%s", os.getpid(), path, f" and tcp {tcp}" if tcp else "")
        engine.wait()
    finally:
        for listener in listeners:
            listener.close()
        if listeners:
            path.unlink(missing_ok=True)
        lock.release()
    log.info("engine stopped")
    return 0


def _exit_now() -> NoReturn:
    """End a wound-down private engine without the interpreter's teardown of torch (seconds its client
    would wait at every quit): its jobs are cancelled and joined, its answers flushed, and its store writes
    are atomic, so nothing is left to finish."""
    logging.shutdown()
    sys.stderr.flush()
    os._exit(0)


def _on_signals(engine: Engine) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: engine.stop())
