"""Store faults: concurrent writers, a full disk, flipped bits, unwritable homes — nothing lost or torn."""

from __future__ import annotations

import contextlib
import errno
import multiprocessing
import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from store import atomic, results
from store.errors import StoreError
from tests.support.engine_helpers import ROOT

pytestmark = pytest.mark.reliability

WRITERS, RUNS = 4, 200


def _writer(home: str, writer: int) -> None:
    os.environ["DIFFLENS_HOME"] = home
    for run in range(RUNS):
        results.save("stress", {"writer": writer, "run": run},
                     {"x": np.full((4,), writer * 1000 + run, dtype=np.float32)}, {"writer": writer})


def test_four_writers_two_hundred_runs_each_lose_nothing(isolated_home: Path) -> None:
    results.list_results()  # create the schema once, as an engine would
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(isolated_home), w)) for w in range(WRITERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
        assert p.exitcode == 0
    rows = results.list_results("stress")
    assert len(rows) == WRITERS * RUNS
    assert len({r["key"] for r in rows}) == WRITERS * RUNS
    for r in rows[:: 37]:
        loaded = results.load(r["key"])
        assert loaded is not None
        assert loaded.tensors["x"][0] == r["inputs"]["writer"] * 1000 + r["inputs"]["run"]
    assert not list(Path(isolated_home, "tensors").glob("*.tmp"))


def test_full_disk_is_a_clear_error_and_leaves_nothing(monkeypatch: pytest.MonkeyPatch, isolated_home: Path) -> None:
    def no_space(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(results, "save_file", no_space)
    with pytest.raises(StoreError, match=r"disk full.*nothing was half-written"):
        results.save("adl", {"a": 1}, {"x": np.zeros(3, dtype=np.float32)}, {})
    assert results.lookup("adl", {"a": 1}) is None
    assert list(Path(isolated_home, "tensors").iterdir()) == []


def test_flipped_bit_is_detected_and_not_served(isolated_home: Path) -> None:
    saved = results.save("adl", {"a": 2}, {"x": np.arange(100, dtype=np.float32)}, {})
    path = results.file_for(saved.key)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    assert results.load(saved.key) is None


def test_unwritable_home_is_a_clear_error(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        target = Path("/proc/difflens-cannot-write/x.safetensors")
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        target = locked / "x.safetensors"
    with pytest.raises(StoreError), atomic.atomic_path(target) as tmp:
        tmp.write_bytes(b"x")


# ---- store faults through the sessions commands (issue 23): one line, problem and fix ----

def _difflens(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DIFFLENS_HOME": str(home), "PYTHONPATH": str(ROOT),
           "DIFFLENS_SESSIONS_DIR": str(home.parent / "no-session-files")}
    return subprocess.run([sys.executable, "-c", "from tui.cli import main; main()", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def _a_store_with_a_session(home: Path) -> None:
    """A store with one session and one result, made by another process (so no connection stays open here)."""
    code = ("import numpy as np; from store import results, sessions; sessions.create('kept'); "
            "results.save('adl', {'a': 1}, {'x': np.zeros(2, np.float32)}, {})")
    subprocess.run([sys.executable, "-c", code], env={**os.environ, "DIFFLENS_HOME": str(home),
                                                      "PYTHONPATH": str(ROOT)}, check=True, timeout=120)


@contextlib.contextmanager
def _store_fault(kind: str, tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "home"
    if kind == "home_is_a_file":
        home.write_text("not a directory")
    elif kind == "db_is_a_directory":
        (home / "difflens.sqlite").mkdir(parents=True)
    elif kind in ("corrupt_db", "truncated_db"):
        _a_store_with_a_session(home)
        db = home / "difflens.sqlite"
        with contextlib.closing(sqlite3.connect(db)) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # every page in the file itself
        for extra in ("-wal", "-shm"):
            Path(f"{db}{extra}").unlink(missing_ok=True)
        data = db.read_bytes()
        db.write_bytes(b"garbage " * 512 if kind == "corrupt_db" else data[: len(data) // 3])
    elif kind == "read_only_store":
        home.mkdir()
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(home)],
                          capture_output=True).returncode != 0:
            pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        if kind == "read_only_store":
            _a_store_with_a_session(home)
            subprocess.run(["mount", "-o", "remount,ro", str(home)], check=True)
        yield home
    finally:
        if kind == "read_only_store":
            subprocess.run(["umount", "-l", str(home)], check=False)


@pytest.mark.parametrize("kind", ["corrupt_db", "truncated_db", "read_only_store", "home_is_a_file",
                                  "db_is_a_directory"])
def test_store_faults_in_the_sessions_commands_are_one_line_with_a_fix(kind: str, tmp_path: Path) -> None:
    with _store_fault(kind, tmp_path) as home:
        before = sorted((p.name, p.stat().st_size) for p in home.iterdir()) if home.is_dir() else None
        for args in (("sessions", "list"), ("sessions", "show", "kept"), ("sessions", "delete", "kept", "--yes"),
                     ("sessions", "import", str(tmp_path / "none.difflens"))):
            proc = _difflens(*args, home=home)
            lines = proc.stderr.strip().splitlines()
            assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
            assert len(lines) == 1 and " — " in lines[0] and "Traceback" not in proc.stderr, (args, proc.stderr)
        after = sorted((p.name, p.stat().st_size) for p in home.iterdir()) if home.is_dir() else None
        assert after == before


def test_a_directory_at_a_result_path_is_recomputed(isolated_home: Path) -> None:
    key = results.key_for("adl", {"a": 3})
    squatter = results.file_for(key)
    squatter.mkdir(parents=True)
    (squatter / "note.txt").write_text("someone's file")
    assert results.lookup("adl", {"a": 3}) is None  # a miss, not a crash
    saved = results.save("adl", {"a": 3}, {"x": np.ones(2, np.float32)}, {})
    assert results.load(saved.key) is not None and results.file_for(key).is_file()
    [moved] = [p for p in squatter.parent.iterdir() if p.name.startswith(f".{squatter.name}.displaced")]
    assert (moved / "note.txt").read_text() == "someone's file"


def test_the_store_database_and_tensors_are_private(isolated_home: Path) -> None:
    results.save("adl", {"a": 4}, {"x": np.ones(2, np.float32)}, {})
    assert stat.S_IMODE((isolated_home / "difflens.sqlite").stat().st_mode) == 0o600
    assert stat.S_IMODE((isolated_home / "tensors").stat().st_mode) == 0o700
    assert stat.S_IMODE(isolated_home.stat().st_mode) == 0o700
