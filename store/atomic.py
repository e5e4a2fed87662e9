"""Atomic writes: a reader sees the old file or the whole new one, never half of it."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

from store.errors import StoreError


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temp path beside `target`; on success fsync and rename it over `target`.

    On any failure the temp file is removed and `target` is untouched; a full disk or a read-only
    directory becomes a `StoreError` naming the place and the fix.
    """
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise _store_error(exc, target) from exc
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with tmp.open("rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        raise _store_error(exc, target) from exc
    except Exception as exc:  # Rust writers (safetensors) report a full disk as their own error type
        if (os_error := _rust_os_error(exc)) is None:
            raise
        raise _store_error(os_error, target) from exc
    finally:
        tmp.unlink(missing_ok=True)


_RUST_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def _rust_os_error(exc: Exception) -> OSError | None:
    """The OSError inside a Rust I/O error's message (`... No space left on device (os error 28)`)."""
    match = _RUST_OS_ERROR.search(str(exc))
    return OSError(int(match.group(1)), os.strerror(int(match.group(1)))) if match else None


def _store_error(exc: OSError, target: Path) -> StoreError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StoreError(f"disk full while writing {target.name} in {target.parent}",
                          "free space or point DIFFLENS_HOME at a larger disk; nothing was half-written")
    if exc.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
        return StoreError(f"cannot write to {target.parent} ({exc.strerror})",
                          "fix its permissions or set DIFFLENS_HOME to a writable directory")
    return StoreError(f"cannot write {target}: {exc.strerror or exc}", "check the disk and DIFFLENS_HOME")


def write_bytes_atomic(target: Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(target: Path, text: str) -> None:
    write_bytes_atomic(target, text.encode("utf-8"))
