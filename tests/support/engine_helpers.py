"""Shared by the engine-server and remote tests: short private dirs, engine env, waiting for events."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
TEST_OPS = "tests.support.engine_test_ops"


@contextmanager
def short_dir(prefix: str = "dl-") -> Iterator[Path]:
    """A private dir under /tmp: Unix socket paths must stay under ~100 bytes, pytest's tmp_path may not."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def engine_env(runtime: Path, **extra: str) -> dict[str, str]:
    """Environment for an engine process of the tests: its own runtime dir and store, the test ops."""
    env = dict(os.environ)
    env.update(DIFFLENS_RUNTIME_DIR=str(runtime), DIFFLENS_HOME=str(runtime / "home"),
               DIFFLENS_EXTRA_OPS=TEST_OPS, PYTHONPATH=str(ROOT), **extra)
    env.pop("DIFFLENS_SOCKET", None)
    env.pop("DIFFLENS_TOKEN", None)
    return env


def engine_cli(*args: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "engine", *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def until(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll `check` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def write_corpus(path: Path, n: int = 48) -> Path:
    """A small text corpus of the tiny tokenizer's words."""
    from tests.support.tiny import WORDS

    lines = [" ".join(WORDS[(i * 7 + j * 3) % 100] for j in range(4 + i % 6)) for i in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return path
