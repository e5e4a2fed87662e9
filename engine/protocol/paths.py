"""Where a local engine lives: its private runtime directory, Unix socket and TCP token file.

Shared by the engine (which creates them) and its clients (which find them); plain Python like the rest of
`engine.protocol`.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path


def runtime_dir() -> Path:
    """The engine's private directory (mode 0700): `DIFFLENS_RUNTIME_DIR`, else `$XDG_RUNTIME_DIR/difflens`,
    else `<tmp>/difflens-<uid>`. Refuses a directory owned by someone else."""
    if env := os.environ.get("DIFFLENS_RUNTIME_DIR"):
        path = Path(env)
    elif xdg := os.environ.get("XDG_RUNTIME_DIR"):
        path = Path(xdg) / "difflens"
    else:
        path = Path(tempfile.gettempdir()) / f"difflens-{os.getuid()}"
    return private_dir(path)


def private_dir(path: Path) -> Path:
    """Create `path` with mode 0700 (tightening it if ours); refuse it if another user owns it."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError:
        pass  # a file, or a symlink: refused just below, naming it
    except OSError as exc:
        raise PermissionError(f"cannot create {path} ({exc.strerror}); set DIFFLENS_RUNTIME_DIR elsewhere") from None
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise PermissionError(f"{path} is not a directory owned by you; set DIFFLENS_RUNTIME_DIR elsewhere")
    if stat.S_IMODE(info.st_mode) != 0o700:
        path.chmod(0o700)
    return path


def default_socket_path() -> Path:
    """The local engine's Unix socket (`DIFFLENS_SOCKET` overrides)."""
    if env := os.environ.get("DIFFLENS_SOCKET"):
        return Path(env)
    return runtime_dir() / "engine.sock"


def default_token_path() -> Path:
    """The 0600 file holding the TCP token (`DIFFLENS_TOKEN_FILE` overrides)."""
    if env := os.environ.get("DIFFLENS_TOKEN_FILE"):
        return Path(env)
    return runtime_dir() / "engine.token"


def read_token(path: Path | None = None) -> str:
    """The TCP token: `DIFFLENS_TOKEN`, else the token file, which must be readable by its owner only."""
    if env := os.environ.get("DIFFLENS_TOKEN"):
        return env.strip()
    path = path or default_token_path()
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise PermissionError(f"token file {path} has mode {mode:o}; run chmod 600 {path}")
    return path.read_text().strip()
