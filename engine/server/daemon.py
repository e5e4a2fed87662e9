"""A background engine on a Unix socket: pid file (locked, so never two on one socket), log file, stale
socket removal, and start / stop / status from the command line.

`--socket` is a path the user typed: the engine only ever removes a stale *socket* there, and writes its `.pid`
and `.log` beside it only when they are new or its own (`check_paths`); anything else is refused in one line.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import BinaryIO

from engine.errors import UserError
from engine.protocol.spawn import child_env, module_argv
from engine.server import local

START_TIMEOUT_S = 180.0


def pid_path(sock: Path) -> Path:
    return sock.with_suffix(".pid")


def log_path(sock: Path) -> Path:
    return sock.with_suffix(".log")


_PID_TEXT = re.compile(rb"\s*\d*\s*")
LOG_HEADER = b"# difflens engine log (this file is written by difflens engine start)\n"


def _what(path: Path) -> str:
    mode = path.lstat().st_mode
    return ("a symlink" if stat.S_ISLNK(mode) else "a directory" if stat.S_ISDIR(mode)
            else "a regular file" if stat.S_ISREG(mode) else "not a socket")


def _ours(path: Path) -> bool:
    """A runtime file the engine wrote: a private (0600) regular file of this user; a pid file holds a pid, a
    log starts with `LOG_HEADER` (a private file of the user's own is never appended to)."""
    info = path.lstat()
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        return False
    with path.open("rb") as fh:
        if path.suffix == ".pid":
            return _PID_TEXT.fullmatch(fh.read(64)) is not None
        return fh.read(len(LOG_HEADER)) == LOG_HEADER  # a log we created starts with our header


def check_paths(sock: Path) -> None:
    """Refuse, before anything is written, a `sock` that exists and is not a socket, and `.pid`/`.log`
    siblings that exist and are not the engine's own (`_ours`)."""
    fix = "pass --socket a path that does not exist yet (difflens never replaces or appends to a file there)"
    if os.path.lexists(sock) and not stat.S_ISSOCK(sock.lstat().st_mode):
        raise UserError(f"{sock} exists and is {_what(sock)}, not an engine socket", fix)
    for path in (pid_path(sock), log_path(sock)):
        if os.path.lexists(path) and not _ours(path):
            raise UserError(f"{path} exists and is not a file this engine wrote ({_what(path)}, "
                            f"mode {stat.S_IMODE(path.lstat().st_mode):o})", fix)


def _runtime_dir(sock: Path) -> None:
    try:
        sock.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot use {sock.parent} for the engine socket ({exc.strerror})",
                        "pass --socket inside a writable directory") from None


class PidLock:
    """An exclusive `flock` on the pid file, held for the engine's life; the kernel drops it if we die."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, sock: Path) -> PidLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UserError(f"an engine already runs on {sock} (pid {read_pid(sock)})",
                            "use it, stop it with `difflens engine stop`, or pass another --socket") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            os.close(self._fd)
            self._fd = None


def claim_socket(sock: Path) -> PidLock:
    """Make `sock` ours: refuse if a live engine holds it or it is not a socket, remove it if it is stale."""
    check_paths(sock)
    _runtime_dir(sock)
    lock = PidLock(pid_path(sock)).acquire(sock)
    if local.is_running(sock):
        lock.release()
        raise UserError(f"an engine already runs on {sock}", "stop it first or pass another --socket")
    if os.path.lexists(sock):
        print(f"removing stale socket {sock}", file=sys.stderr)
        sock.unlink()
    return lock


def read_pid(sock: Path) -> int | None:
    try:
        return int(pid_path(sock).read_text().strip())
    except (OSError, ValueError):
        return None


def start(sock: Path, serve_args: list[str] | None = None, timeout: float = START_TIMEOUT_S) -> int:
    """Start a detached engine on `sock` (logging to `<sock>.log`) and wait until it answers; its pid."""
    if local.is_running(sock):
        raise UserError(f"an engine already runs on {sock} (pid {read_pid(sock)})",
                        "use it, or stop it with `difflens engine stop`")
    check_paths(sock)
    _runtime_dir(sock)
    log = log_path(sock)
    cmd = module_argv("engine", "serve", "--socket", str(sock), *(serve_args or []))
    with _open_log(log) as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, env=child_env(), close_fds=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if local.is_running(sock):
            return proc.pid
        if proc.poll() is not None:
            raise UserError(f"the engine exited while starting (code {proc.returncode}): {_tail(log)}",
                            f"see {log}")
        time.sleep(0.2)
    proc.terminate()
    raise UserError(f"the engine did not answer on {sock} within {timeout:.0f} s", f"see {log}")


def _open_log(log: Path) -> BinaryIO:
    """Our log for appending: the existing one `check_paths` found ours, else a new file (never one that
    appeared meanwhile) that starts with `LOG_HEADER`."""
    try:
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        if not _ours(log):
            raise UserError(f"{log} appeared while the engine was starting and is not its own",
                            "remove it or pass --socket elsewhere") from None
        return open(log, "ab")
    out = os.fdopen(fd, "ab")
    out.write(LOG_HEADER)
    return out


def stop(sock: Path, timeout: float = 30.0) -> bool:
    """Ask the engine on `sock` to shut down (running jobs are cancelled); False if none was running."""
    pid = read_pid(sock)
    try:
        local.call(sock, "engine.shutdown", timeout=10)
    except local.NotRunning:
        if pid is None or not _alive(pid):
            return False
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (pid is None or not _alive(pid)) and not local.is_running(sock):
            return True
        time.sleep(0.1)
    if pid is not None and _alive(pid):
        os.kill(pid, signal.SIGKILL)
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):  # a zombie child of ours has exited
        if Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].startswith("Z"):
            return False
    return True


def _tail(log: Path, lines: int = 5) -> str:
    try:
        return " | ".join(log.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""
